-- A reader's list in the served set, with the titles its reasons name.
SELECT r.set_id AS "set_id!", r.target_date AS "target_date!", r.rank AS "rank!",
       r.webtoon_id AS "webtoon_id!", w.title, r.score AS "score!", r.variant AS "variant!",
       r.reason AS "reason!", r.because_id, b.title AS "because_title?", r.because
  FROM current_recommendations r
  JOIN webtoons w ON w.id = r.webtoon_id
  LEFT JOIN webtoons b ON b.id = r.because_id
 WHERE r.user_id = $1
 ORDER BY r.rank
