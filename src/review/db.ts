/**
 * The review console's embedded database (better-sqlite3, one file, WAL). Migrations are numbered
 * and applied in order inside one transaction each; a database written by a newer build is refused
 * rather than half-understood.
 *
 * The audit log is the `decisions` table. It is append-only by construction: triggers abort any
 * DELETE and any UPDATE except the one that stamps `published_at` when the outbox publisher has put
 * the decision on Kafka.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export type ReviewDb = Database.Database;

const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: 'items, reasons, photos, decisions (audit log + outbox), sessions',
    sql: `
      CREATE TABLE items (
        id               INTEGER PRIMARY KEY,
        decision_id      TEXT NOT NULL UNIQUE,
        input_id         TEXT NOT NULL,
        flagged_at       TEXT NOT NULL,
        received_at      TEXT NOT NULL,
        platform         TEXT NOT NULL,
        listing_url      TEXT NOT NULL,
        listing_title    TEXT,
        listing_seller   TEXT,
        image_url        TEXT,
        image_sha256     TEXT NOT NULL,
        top_label        TEXT NOT NULL,
        top_score        REAL NOT NULL,
        model_name       TEXT,
        model_version    TEXT,
        message          TEXT NOT NULL,
        source           TEXT,
        status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'rejected', 'escalated')),
        label            TEXT,
        last_decision_id INTEGER,
        first_decided_at TEXT
      );
      CREATE INDEX items_status_flagged ON items (status, flagged_at DESC);
      CREATE INDEX items_status_score ON items (status, top_score DESC);
      CREATE INDEX items_platform ON items (platform);
      CREATE INDEX items_sha256 ON items (image_sha256);

      CREATE TABLE reasons (
        item_id    INTEGER NOT NULL REFERENCES items (id),
        classifier TEXT NOT NULL,
        label      TEXT NOT NULL,
        score      REAL NOT NULL,
        threshold  REAL NOT NULL
      );
      CREATE INDEX reasons_label ON reasons (label, item_id);
      CREATE INDEX reasons_item ON reasons (item_id);

      CREATE TABLE photos (
        sha256       TEXT PRIMARY KEY,
        content_type TEXT NOT NULL,
        bytes        BLOB NOT NULL,
        stored_at    TEXT NOT NULL
      );
      CREATE TABLE photo_attempts (
        sha256     TEXT PRIMARY KEY,
        attempts   INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        last_at    TEXT NOT NULL
      );

      CREATE TABLE decisions (
        id               INTEGER PRIMARY KEY,
        review_id        TEXT NOT NULL UNIQUE,
        item_id          INTEGER NOT NULL REFERENCES items (id),
        verdict          TEXT NOT NULL CHECK (verdict IN ('confirmed', 'rejected', 'escalated', 'reopened')),
        label            TEXT NOT NULL,
        correct_label    TEXT,
        note             TEXT,
        analyst          TEXT NOT NULL,
        role             TEXT NOT NULL,
        decided_at       TEXT NOT NULL,
        previous_verdict TEXT,
        previous_label   TEXT,
        message          TEXT NOT NULL,
        published_at     TEXT
      );
      CREATE INDEX decisions_item ON decisions (item_id, id);
      CREATE INDEX decisions_unpublished ON decisions (id) WHERE published_at IS NULL;
      CREATE INDEX decisions_analyst ON decisions (analyst, id);
      CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
      CREATE TRIGGER decisions_only_publish BEFORE UPDATE ON decisions
        WHEN OLD.published_at IS NOT NULL OR NEW.published_at IS NULL
          OR NEW.id IS NOT OLD.id OR NEW.review_id IS NOT OLD.review_id OR NEW.item_id IS NOT OLD.item_id
          OR NEW.verdict IS NOT OLD.verdict OR NEW.label IS NOT OLD.label OR NEW.correct_label IS NOT OLD.correct_label
          OR NEW.note IS NOT OLD.note OR NEW.analyst IS NOT OLD.analyst OR NEW.role IS NOT OLD.role
          OR NEW.decided_at IS NOT OLD.decided_at OR NEW.previous_verdict IS NOT OLD.previous_verdict
          OR NEW.previous_label IS NOT OLD.previous_label OR NEW.message IS NOT OLD.message
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

      CREATE TABLE sessions (
        id         TEXT PRIMARY KEY,
        username   TEXT NOT NULL,
        role       TEXT NOT NULL CHECK (role IN ('analyst', 'lead')),
        csrf       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
      );
      CREATE INDEX sessions_expiry ON sessions (expires_at);
    `,
  },
  {
    version: 2,
    name: 'the audit log refuses INSERT OR REPLACE over an existing decision',
    // A REPLACE deletes the old row without firing DELETE triggers (recursive_triggers is off), so
    // append-only needs its own guard on INSERT.
    sql: `
      CREATE TRIGGER decisions_no_replace BEFORE INSERT ON decisions
        WHEN EXISTS (SELECT 1 FROM decisions WHERE id = NEW.id OR review_id = NEW.review_id)
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS.at(-1)!.version;

export class ReviewDbError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ReviewDbError';
  }
}

/** Opens (creating if needed) and migrates the database at `file`; ':memory:' for throwaway use. */
export function openReviewDb(file: string): ReviewDb {
  if (file !== ':memory:') mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  let db: ReviewDb;
  try {
    db = new Database(file);
  } catch (err) {
    throw new ReviewDbError(`cannot open the review database ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    db.pragma('journal_mode = WAL');
    // FULL, not NORMAL: under WAL + NORMAL a power loss can roll back the last commits, yet the feed
    // commits an item's Kafka offset as soon as it is stored, and an analyst is told a decision is
    // recorded. An fsync per commit costs little at review rates (docs/BENCHMARKS.md).
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    migrate(db);
  } catch (err) {
    db.close();
    throw err instanceof ReviewDbError ? err : new ReviewDbError(`cannot prepare the review database ${file}: ${(err as Error).message}`, { cause: err });
  }
  return db;
}

function migrate(db: ReviewDb): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
  const applied = new Set((db.prepare('SELECT version FROM schema_migrations').all() as Array<{ version: number }>).map((r) => r.version));
  const newest = Math.max(0, ...applied);
  if (newest > SCHEMA_VERSION) {
    throw new ReviewDbError(`the review database is at schema version ${newest}, newer than this build understands (${SCHEMA_VERSION}); run the newer build or restore a backup`);
  }
  for (const m of MIGRATIONS) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, new Date().toISOString());
    })();
  }
}

export function appliedMigrations(db: ReviewDb): Array<{ version: number; name: string; applied_at: string }> {
  return db.prepare('SELECT version, name, applied_at FROM schema_migrations ORDER BY version').all() as Array<{ version: number; name: string; applied_at: string }>;
}
