-- `sm2_next` as one SQL query instead of a PL/pgSQL block, and no longer STRICT, so the
-- planner inlines it into the statement that calls it (`apply_review`'s
-- `SELECT * INTO STRICT new_state FROM sm2_next(...)`): a review no longer runs a second
-- PL/pgSQL function with its own executor and result store (the review profile in
-- bench/REPORT.md). Only a non-STRICT `LANGUAGE sql` set-returning function is inlined.
-- Its callers never pass NULL (the SRS row's columns are NOT NULL, the quality is checked),
-- so dropping STRICT changes nothing they see.
--
-- The same transcription of `src/domain/sm2.rs` (SM2.md, steps 1-5) as before, with the
-- same operations in the same order in double precision: `tests/api.rs` still checks it
-- against the Rust function bit for bit. Change both together.
CREATE OR REPLACE FUNCTION sm2_next(p_ef double precision, p_interval_days integer, p_repetitions integer, p_q smallint)
RETURNS TABLE (easiness_factor double precision, interval_days integer, repetitions integer, status text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT step1.ef, step2.days::integer, step2.reps,
        -- Step 3, on the capped interval.
        CASE
            WHEN p_q < 3 OR step2.reps < 3 THEN 'learning'
            WHEN step1.ef >= 2.3::float8 AND step2.days >= 21 THEN 'mastered'
            ELSE 'review'
        END
    FROM
        -- Step 1, on every review, failures included; every literal double precision.
        (SELECT greatest(1.3::float8,
            p_ef + (0.1::float8 - (5::float8 - p_q::float8)
                * (0.08::float8 + (5::float8 - p_q::float8) * 0.02::float8))) AS ef) AS step1,
        -- Step 2 (round(double precision) rounds half to even, as Rust's round_ties_even;
        -- the interval is multiplied by the new ef), then step 5's cap before the cast.
        LATERAL (SELECT
            least(CASE
                WHEN p_q < 3 THEN 1::float8
                WHEN p_repetitions = 0 THEN 1::float8
                WHEN p_repetitions = 1 THEN 6::float8
                ELSE round(p_interval_days::float8 * step1.ef)
            END, 36500::float8) AS days,
            CASE WHEN p_q < 3 THEN 0 ELSE p_repetitions + 1 END AS reps) AS step2
$$;
