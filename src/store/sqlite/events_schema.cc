#include "store/sqlite/events_schema.h"

namespace nucleon {

namespace {

const Migration kMigrations[] = {
    // v1: the first release.
    {"CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
     "CREATE TABLE apps(id INTEGER PRIMARY KEY, app_id TEXT NOT NULL UNIQUE);"
     "CREATE TABLE devices(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, device_key TEXT NOT NULL,"
     " UNIQUE(app, device_key));"
     "CREATE TABLE users(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, user_key TEXT NOT NULL,"
     " UNIQUE(app, user_key));"
     "CREATE TABLE sessions(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, device INTEGER NOT NULL,"
     " session_key TEXT NOT NULL, user INTEGER NOT NULL, start_ms INTEGER NOT NULL,"
     " end_ms INTEGER NOT NULL, has_init INTEGER NOT NULL DEFAULT 0, UNIQUE(device, session_key));"
     "CREATE TABLE events(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, session INTEGER NOT NULL,"
     " device INTEGER NOT NULL, user INTEGER NOT NULL, type INTEGER NOT NULL, name TEXT,"
     " time_ms INTEGER NOT NULL, ident INTEGER, client_id TEXT, user_id TEXT, anon_id TEXT,"
     " platform TEXT, os_version TEXT, locale TEXT, version TEXT, module_version TEXT, arch TEXT,"
     " client TEXT, total_ram REAL, country TEXT, payload TEXT, error_hash TEXT);"
     "CREATE UNIQUE INDEX events_identity ON events(session, ident) WHERE ident IS NOT NULL;"
     "CREATE INDEX events_app_time ON events(app, time_ms);"
     "CREATE INDEX events_user ON events(user);"
     "CREATE TABLE tombstones(app INTEGER NOT NULL, hash INTEGER NOT NULL,"
     " PRIMARY KEY(app, hash)) WITHOUT ROWID;"
     "INSERT INTO meta(key, value) VALUES('probe', '0');",
     nullptr},
    // v2: the identity index covers every event.
    {"DROP INDEX events_identity;"
     "CREATE UNIQUE INDEX events_identity ON events(session, ident);",
     nullptr},
    // v3: no per-user event index.
    {"DROP INDEX events_user;", nullptr},
    // v4: the current layout. The first release's tables stay, renamed, until
    // the store has imported them (legacy_import.cc), which then drops them.
    //   events: one compact row per stored event (event_codec.h); row ids are
    //     never reused (AUTOINCREMENT), so the rollup checkpoint mark stays
    //     meaningful after deletes. No index on time: a bucket's rollup knows
    //     the runs of row ids that hold its events (bucket.h).
    //   sessions, devices, users: entity state kept current by every commit
    //     (start/end, counts, context event, install, first/last seen).
    //   rollups, rollup_props: per 15-minute bucket aggregates up to the mark
    //     (a rollup's key is RollupKey(app, bucket): a row id, so the rows of a
    //     few kilobytes stay in their pages).
    //   bucket_counts: installs, new users and sessions (count, seconds) per
    //     bucket of their start, kept current by every commit.
    {"ALTER TABLE events RENAME TO legacy_events;"
     "ALTER TABLE sessions RENAME TO legacy_sessions;"
     "ALTER TABLE devices RENAME TO legacy_devices;"
     "ALTER TABLE users RENAME TO legacy_users;"
     "ALTER TABLE apps RENAME TO legacy_apps;"
     "CREATE TABLE apps(id INTEGER PRIMARY KEY, app_id TEXT NOT NULL UNIQUE,"
     " users INTEGER NOT NULL DEFAULT 0);"
     "CREATE TABLE strings(id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
     "CREATE TABLE devices(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, device_key TEXT NOT NULL,"
     " install_ms INTEGER NOT NULL, install_session INTEGER NOT NULL, UNIQUE(app, device_key));"
     "CREATE INDEX devices_install ON devices(app, install_ms);"
     "CREATE TABLE users(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, user_key TEXT NOT NULL,"
     " anon_id TEXT, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, UNIQUE(app, user_key));"
     "CREATE INDEX users_first ON users(app, first_ms);"
     "CREATE INDEX users_last ON users(app, last_ms);"
     "CREATE TABLE sessions(id INTEGER PRIMARY KEY, app INTEGER NOT NULL, device INTEGER NOT NULL,"
     " session_key TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,"
     " has_init INTEGER NOT NULL, actions INTEGER NOT NULL, errors INTEGER NOT NULL,"
     " ctx_event INTEGER NOT NULL, ctx_ms INTEGER NOT NULL, ctx_from_init INTEGER NOT NULL,"
     " users BLOB, UNIQUE(device, session_key));"
     "CREATE INDEX sessions_start ON sessions(app, start_ms);"
     "CREATE TABLE user_sessions(user INTEGER NOT NULL, session INTEGER NOT NULL,"
     " PRIMARY KEY(user, session)) WITHOUT ROWID;"
     "CREATE TABLE user_props(user INTEGER NOT NULL, key TEXT NOT NULL, time_ms INTEGER NOT NULL,"
     " value TEXT NOT NULL, PRIMARY KEY(user, key)) WITHOUT ROWID;"
     "CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, app INTEGER NOT NULL,"
     " session INTEGER NOT NULL, user INTEGER NOT NULL, type INTEGER NOT NULL, name INTEGER,"
     " time_ms INTEGER NOT NULL, ident INTEGER, client_id, body BLOB);"
     "CREATE UNIQUE INDEX ev_identity ON events(session, ident);"
     "CREATE TABLE rollups(key INTEGER PRIMARY KEY, core BLOB NOT NULL);"
     "CREATE TABLE rollup_props(app INTEGER NOT NULL, event INTEGER NOT NULL, key INTEGER NOT NULL,"
     " bucket INTEGER NOT NULL, vals BLOB NOT NULL, PRIMARY KEY(app, event, key, bucket))"
     " WITHOUT ROWID;"
     "CREATE TABLE bucket_counts(app INTEGER NOT NULL, bucket INTEGER NOT NULL,"
     " installs INTEGER NOT NULL, new_users INTEGER NOT NULL, sessions INTEGER NOT NULL,"
     " session_seconds INTEGER NOT NULL, PRIMARY KEY(app, bucket)) WITHOUT ROWID;"
     "INSERT OR REPLACE INTO meta(key, value) VALUES('rollup_mark', '0');"
     "INSERT OR REPLACE INTO meta(key, value) VALUES('legacy_import', '0');",
     // A new file (or one without events) has nothing to import. Tombstones
     // of the first release hash the whole 64-bit identity (the writer checks
     // both forms when this mark is there).
     [](SqliteDb& db) -> Status {
       NUCLEON_RETURN_IF_ERROR(
           db.Exec("INSERT INTO meta(key, value) SELECT 'legacy_tombstones', '1'"
                   " WHERE EXISTS (SELECT 1 FROM tombstones)"));
       bool any = false;
       {
         auto q = db.Prepare("SELECT EXISTS (SELECT 1 FROM legacy_events)");
         if (!q.ok()) return q.status();
         Status st;
         any = q->Step(&st) && q->Int(0) != 0;
         NUCLEON_RETURN_IF_ERROR(st);
       }  // the statement is finished before the schema changes
       if (any) return Status::Ok();
       return db.Exec(
           "DROP TABLE legacy_events; DROP TABLE legacy_sessions; DROP TABLE legacy_devices;"
           " DROP TABLE legacy_users; DROP TABLE legacy_apps;"
           " DELETE FROM meta WHERE key = 'legacy_import';");
     }},
    // v5: a device's sessions by start, so that its first session (its
    // install) is found at once however many it has: after a retention step
    // or a user delete took the one it had.
    {"CREATE INDEX sessions_device_start ON sessions(device, start_ms);", nullptr},
    // v6: errors by time, with what their groups count (a partial index:
    // errors are a small share of the events), so that a range's error
    // groups read its errors' index entries only.
    {"CREATE INDEX events_errors ON events(app, time_ms, name, user) WHERE type = 3;", nullptr},
};

}  // namespace

std::span<const Migration> EventsMigrations() { return kMigrations; }

}  // namespace nucleon
