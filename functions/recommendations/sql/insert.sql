-- One chunk of a set's rows; 0 and '' stand for "no anchor".
INSERT INTO recommendations (set_id, user_id, rank, webtoon_id, score, variant, reason, because_id, because)
SELECT $1, r.user_id, r.rank, r.webtoon_id, r.score, r.variant, r.reason,
       nullif(r.because_id, 0), nullif(r.because, '')
  FROM UNNEST($2::int8[], $3::int2[], $4::int8[], $5::float4[], $6::text[], $7::text[],
              $8::int8[], $9::text[])
       AS r (user_id, rank, webtoon_id, score, variant, reason, because_id, because)
