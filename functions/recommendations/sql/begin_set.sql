-- A new set for the day, invisible until complete.
SELECT begin_recommendation_set($1) AS "set_id!"
