-- Where the last pseudonymisation stopped; locked, so two runs cannot both move it.
SELECT upto FROM retention_progress WHERE name = $1 FOR UPDATE
