-- A review in one round trip (issue 12): `SELECT * FROM apply_review(...)` does what the
-- review transaction did in nine statements (BEGIN, the card's deck, the SRS row's
-- insert and lock, its update, the log row, the deck counters, the outbox row, COMMIT).
-- One statement outside an explicit transaction is a transaction of its own, so the
-- effects are all or nothing as before, and there is no COMMIT for a caller that goes
-- away to interrupt.
--
-- SM-2 lives here in SQL (`sm2_next`) because the new state depends on the locked row.
-- It is a transcription of `src/domain/sm2.rs` (SM2.md, steps 1-5, in that order), in
-- double precision with the same operations in the same order, so the results are the
-- same bit for bit; `tests/api.rs` checks it against the Rust function over thousands of
-- states. Change both together.

-- SM-2 (SM2.md): the state after a review of quality `p_q` (0-5) of a card whose state
-- is (`p_ef`, `p_interval_days`, `p_repetitions`). Status is the algorithm's (never 'new').
CREATE FUNCTION sm2_next(p_ef double precision, p_interval_days integer, p_repetitions integer, p_q smallint)
RETURNS TABLE (easiness_factor double precision, interval_days integer, repetitions integer, status text)
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    qf   constant double precision := p_q;
    next_ef      double precision;
    next_days    double precision;
    next_reps    integer;
BEGIN
    -- Step 1, on every review, failures included. Every literal is double precision
    -- (an untyped 0.1 would be numeric), and the expression keeps the documented shape.
    next_ef := greatest(1.3::float8,
        p_ef + (0.1::float8 - (5::float8 - qf) * (0.08::float8 + (5::float8 - qf) * 0.02::float8)));
    -- Step 2. round(double precision) rounds half to even (rint), as Rust's
    -- round_ties_even; the interval is multiplied by the *new* ef.
    IF p_q < 3 THEN
        next_days := 1;
        next_reps := 0;
    ELSE
        next_days := CASE p_repetitions
            WHEN 0 THEN 1
            WHEN 1 THEN 6
            ELSE round(p_interval_days::float8 * next_ef)
        END;
        next_reps := p_repetitions + 1;
    END IF;
    -- Step 5's cap, taken before the cast so a huge product cannot overflow integer.
    next_days := least(next_days, 36500::float8);
    easiness_factor := next_ef;
    interval_days := next_days::integer;
    repetitions := next_reps;
    -- Step 3.
    status := CASE
        WHEN p_q < 3 OR next_reps < 3 THEN 'learning'
        WHEN next_ef >= 2.3::float8 AND next_days >= 21 THEN 'mastered'
        ELSE 'review'
    END;
    RETURN NEXT;
END
$$;

-- One review of `p_card` by `p_user` at `p_now` (its UTC date `p_today`, both from the
-- service's clock), with quality `p_quality` and `p_time_taken` seconds.
--
-- The card must be in an active deck, and in `p_deck` when that is not NULL; otherwise
-- nothing changes and no row is returned. Otherwise, atomically: the SRS row is created
-- if missing (as InitializeStudy would) and locked, so two concurrent reviews of one
-- card apply one after the other; SM-2 gives its new state; the review-log row
-- `p_review_id` is written; the deck's counters move (cards_studied +1 on the card's
-- first review, cards_mastered +-1 on entering / leaving mastered); and the cache keys
-- `p_outbox_keys` go into the outbox. Returns the state before and after, whether this
-- was the card's first review, and the outbox row's id.
CREATE FUNCTION apply_review(
    p_user uuid, p_card uuid, p_deck uuid, p_quality smallint, p_time_taken integer,
    p_now timestamptz, p_today date, p_review_id uuid, p_outbox_keys text[])
RETURNS TABLE (
    previous_easiness_factor double precision, previous_interval_days integer,
    previous_repetitions integer, previous_status text, previous_next_review_date date,
    first_review boolean,
    easiness_factor double precision, interval_days integer, repetitions integer,
    status text, next_review_date date, outbox_id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    card_deck uuid;
    old_row   card_srs%ROWTYPE;
    new_state record;
    studied   integer;
    mastered  integer;
BEGIN
    -- A card of a soft-deleted deck is gone for learners (HTTP_API.md).
    SELECT c.deck_id INTO card_deck
    FROM cards c JOIN decks d ON d.id = c.deck_id AND d.is_active
    WHERE c.id = p_card;
    IF card_deck IS NULL OR card_deck <> coalesce(p_deck, card_deck) THEN
        RETURN;
    END IF;

    INSERT INTO card_srs (user_id, card_id, deck_id, next_review_date, created_at, updated_at)
    VALUES (p_user, p_card, card_deck, p_today, p_now, p_now)
    ON CONFLICT ON CONSTRAINT card_srs_pkey DO NOTHING;
    SELECT * INTO STRICT old_row FROM card_srs s
    WHERE s.user_id = p_user AND s.card_id = p_card
    FOR UPDATE;

    SELECT * INTO STRICT new_state
    FROM sm2_next(old_row.easiness_factor, old_row.interval_days, old_row.repetitions, p_quality);
    studied := CASE WHEN old_row.last_reviewed_at IS NULL THEN 1 ELSE 0 END;
    mastered := CASE
        WHEN old_row.status <> 'mastered' AND new_state.status = 'mastered' THEN 1
        WHEN old_row.status = 'mastered' AND new_state.status <> 'mastered' THEN -1
        ELSE 0
    END;

    UPDATE card_srs s SET easiness_factor = new_state.easiness_factor, interval_days = new_state.interval_days,
        repetitions = new_state.repetitions, status = new_state.status,
        next_review_date = p_today + new_state.interval_days, last_reviewed_at = p_now, updated_at = p_now
    WHERE s.user_id = p_user AND s.card_id = p_card;

    INSERT INTO reviews (id, user_id, card_id, deck_id, quality, time_taken, previous_status,
        new_status, reviewed_at)
    VALUES (p_review_id, p_user, p_card, card_deck, p_quality, p_time_taken, old_row.status,
        new_state.status, p_now);

    INSERT INTO deck_progress AS dp (user_id, deck_id, cards_studied, cards_mastered,
        first_studied_at, last_studied_at, created_at)
    VALUES (p_user, card_deck, studied, greatest(mastered, 0), p_now, p_now, p_now)
    ON CONFLICT ON CONSTRAINT deck_progress_pkey DO UPDATE SET
        cards_studied = dp.cards_studied + EXCLUDED.cards_studied,
        cards_mastered = greatest(0, dp.cards_mastered + mastered),
        first_studied_at = coalesce(dp.first_studied_at, EXCLUDED.first_studied_at),
        last_studied_at = greatest(dp.last_studied_at, EXCLUDED.last_studied_at);

    INSERT INTO cache_outbox (keys) VALUES (p_outbox_keys) RETURNING id INTO outbox_id;

    previous_easiness_factor := old_row.easiness_factor;
    previous_interval_days := old_row.interval_days;
    previous_repetitions := old_row.repetitions;
    previous_status := old_row.status;
    previous_next_review_date := old_row.next_review_date;
    first_review := studied = 1;
    easiness_factor := new_state.easiness_factor;
    interval_days := new_state.interval_days;
    repetitions := new_state.repetitions;
    status := new_state.status;
    next_review_date := p_today + new_state.interval_days;
    RETURN NEXT;
END
$$;
