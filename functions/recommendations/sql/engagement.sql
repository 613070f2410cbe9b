-- Each reader's engagement with each title over the history window ($6 to $7): before the
-- target day ($3, its start) weighted by kind ($4, $5) and halved every $2 days of age on the
-- target day ($1); the target day's own, by kind only; whether an episode was read that day;
-- and the reader's last event with the title.
SELECT e.user_id AS "user_id!",
       e.webtoon_id AS "webtoon_id!",
       coalesce(sum(k.weight * power(0.5, ($1::date - (e.occurred_at AT TIME ZONE 'Asia/Seoul')::date) / $2::float8))
                FILTER (WHERE e.occurred_at < $3), 0)::float8 AS "before!",
       coalesce(sum(k.weight) FILTER (WHERE e.occurred_at >= $3), 0)::float8 AS "on_day!",
       bool_or(e.kind = 'episode_read' AND e.occurred_at >= $3) AS "read_on_day!",
       max(e.occurred_at) AS "last_at!"
  FROM user_webtoon_events e
  JOIN UNNEST($4::text[], $5::float8[]) AS k (kind, weight) ON k.kind = e.kind
 WHERE e.occurred_at >= $6 AND e.occurred_at < $7
 GROUP BY e.user_id, e.webtoon_id
