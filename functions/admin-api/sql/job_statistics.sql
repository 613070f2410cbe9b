-- Per job, runs started in [$1, $2): how many, how many failed, and the p50/p95 duration.
SELECT job AS "job!",
       count(*) AS "runs!",
       count(*) FILTER (WHERE error IS NOT NULL) AS "failures!",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at) * 1000)
           AS "p50_ms!",
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at) * 1000)
           AS "p95_ms!",
       max(started_at) AS "last_started_at!"
FROM job_runs
WHERE started_at >= $1 AND started_at < $2
GROUP BY job
ORDER BY job
