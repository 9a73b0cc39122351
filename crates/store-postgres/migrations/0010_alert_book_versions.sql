-- The book's own version, apart from `version` (which uploads and settings changes advance):
-- an evaluation saves over the book it read even when an upload arrived meanwhile (the person
-- stays due for that upload), so a person who uploads faster than an evaluation takes still
-- gets their alerts. Saves compare this; uploads never touch it.
ALTER TABLE alert_books ADD COLUMN book_version BIGINT NOT NULL DEFAULT 0;
