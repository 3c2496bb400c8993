-- deck-service schema: content (decks, cards), per-user spaced-repetition state, the
-- review log, per-user deck progress, and the cache-invalidation outbox.
--
-- Sizing target: 100k cards and 1M SRS rows with every read path on an index
-- (the study queue, progress and the review log never scan a whole table).

-- Decks. Soft-deleted by is_active = false, so SRS rows and the review log keep
-- pointing at something.
CREATE TABLE decks (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    description text,
    level       text NOT NULL CHECK (level IN ('A1', 'A2', 'B1', 'B2', 'C1', 'C2')),
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- ListDecks: active decks, newest first (optionally one level), paginated.
CREATE INDEX decks_active_newest ON decks (created_at DESC, id DESC) WHERE is_active;
CREATE INDEX decks_active_level_newest ON decks (level, created_at DESC, id DESC) WHERE is_active;

-- Cards. Deleting a card deletes its SRS rows (they mean nothing without it); the
-- review log keeps the card id as history.
CREATE TABLE cards (
    id               uuid PRIMARY KEY,
    deck_id          uuid NOT NULL REFERENCES decks (id),
    front_text       text NOT NULL CHECK (char_length(front_text) BETWEEN 1 AND 1000),
    back_text        text NOT NULL CHECK (char_length(back_text) BETWEEN 1 AND 1000),
    example_sentence text,
    pronunciation    text CHECK (char_length(pronunciation) <= 255),
    difficulty       text NOT NULL CHECK (difficulty IN ('easy', 'medium', 'hard')),
    order_index      integer NOT NULL DEFAULT 0 CHECK (order_index >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- ListCards, card counts, and the "new cards" part of the study queue, all in
-- order_index order within a deck.
CREATE INDEX cards_deck_order ON cards (deck_id, order_index, id);

-- Per-user SRS state of one card (SM2.md). deck_id is denormalised from cards so the
-- per-deck progress and queue queries need no join to filter; it follows a card that
-- moves to another deck (same transaction as the move).
CREATE TABLE card_srs (
    user_id          uuid NOT NULL,
    card_id          uuid NOT NULL REFERENCES cards (id) ON DELETE CASCADE,
    deck_id          uuid NOT NULL,
    -- Stored unrounded: SM2.md expects values such as 2.8000000000000003.
    easiness_factor  double precision NOT NULL DEFAULT 2.5,
    interval_days    integer NOT NULL DEFAULT 0 CHECK (interval_days BETWEEN 0 AND 36500),
    repetitions      integer NOT NULL DEFAULT 0 CHECK (repetitions >= 0),
    status           text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'learning', 'review', 'mastered')),
    next_review_date date NOT NULL,
    -- NULL until the first review: "cards studied" counts rows with a review.
    last_reviewed_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, card_id)
);
-- The study queue's due part (next_review_date <= today, oldest first) and the
-- early-practice part (due later, soonest first) are range scans of one user.
CREATE INDEX card_srs_user_due ON card_srs (user_id, next_review_date, card_id);
-- Per-deck progress: status counts and averages of one user's rows in one deck.
CREATE INDEX card_srs_user_deck_status ON card_srs (user_id, deck_id, status);
-- Card deletion / moves adjust every user's rows of one card.
CREATE INDEX card_srs_card ON card_srs (card_id);

-- The review log: one row per review, never updated.
CREATE TABLE reviews (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL,
    card_id         uuid NOT NULL,
    deck_id         uuid NOT NULL,
    quality         smallint NOT NULL CHECK (quality BETWEEN 0 AND 5),
    time_taken      integer NOT NULL CHECK (time_taken >= 0),
    previous_status text NOT NULL,
    new_status      text NOT NULL,
    reviewed_at     timestamptz NOT NULL
);
-- ListReviews (newest first, optional date range), streaks, dashboard and trends.
CREATE INDEX reviews_user_time ON reviews (user_id, reviewed_at DESC, id DESC);
-- Per-deck statistics and trends filtered to one deck.
CREATE INDEX reviews_user_deck_time ON reviews (user_id, deck_id, reviewed_at);

-- Per-user deck progress: a row exists once the user has started the deck
-- (initialised study on it, or reviewed one of its cards). The counters follow
-- HTTP_API.md: cards_studied +1 on a card's first review, cards_mastered +-1 on
-- entering / leaving mastered.
CREATE TABLE deck_progress (
    user_id          uuid NOT NULL,
    deck_id          uuid NOT NULL REFERENCES decks (id),
    cards_studied    integer NOT NULL DEFAULT 0 CHECK (cards_studied >= 0),
    cards_mastered   integer NOT NULL DEFAULT 0 CHECK (cards_mastered >= 0),
    first_studied_at timestamptz,
    last_studied_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, deck_id)
);
-- Content writes invalidate the cached progress of every user who started the deck.
CREATE INDEX deck_progress_deck ON deck_progress (deck_id);

-- Cache keys to delete, written in the same transaction as the change that makes
-- them stale. The writer deletes the keys right after COMMIT and then its row; when
-- Redis is down the row stays and a background task deletes the keys (and the row)
-- once Redis answers again, so no stale entry outlives an outage.
CREATE TABLE cache_outbox (
    id         bigserial PRIMARY KEY,
    keys       text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
