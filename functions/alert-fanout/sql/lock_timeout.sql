-- How long this transaction waits for the alert's lock: as long as another invocation's
-- fan-out of it may take (the pool's 5 s statement timeout would fail the wait instead).
SELECT set_config('statement_timeout', '0', true) AS statement_timeout,
       set_config('lock_timeout', '120s', true) AS lock_timeout
