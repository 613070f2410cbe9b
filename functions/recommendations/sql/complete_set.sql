-- Serves the set, and drops the ones it supersedes; returns how many were dropped.
SELECT complete_recommendation_set($1, $2, $3) AS "dropped!"
