#include "server/core/store.h"

#include <sqlite3.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace lemo::server {
namespace {

// Migration i takes the schema from version i to i + 1. Append, never edit:
// databases in the field are at any of these versions. Jobs, events and
// checkpoints are stored as serialized protos next to the columns that queries
// need, so adding a proto field needs no migration.
const char* const kMigrations[] = {
    // 0 -> 1: the three tables.
    "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE, state INTEGER NOT NULL, job BLOB NOT NULL);"
    "CREATE TABLE events (job_id TEXT NOT NULL, sequence INTEGER NOT NULL,"
    " event BLOB NOT NULL, PRIMARY KEY (job_id, sequence)) WITHOUT ROWID;"
    "CREATE TABLE checkpoints (job_id TEXT NOT NULL, checkpoint_id TEXT NOT "
    "NULL,"
    " step INTEGER NOT NULL, info BLOB NOT NULL,"
    " PRIMARY KEY (job_id, checkpoint_id)) WITHOUT ROWID;",
    // 1 -> 2: ListJobs filters by state.
    "CREATE INDEX jobs_by_state ON jobs (state);",
    // 2 -> 3: each job's owner principal (DESIGN.md "Security"). Rows from
    // before get '' (admin-only), so nothing old leaks to a client.
    "ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';",
    // 3 -> 4: each event's kind (JobEvent's oneof field number), so the
    // oldest metric and log events can be dropped without parsing blobs.
    // Rows from before get 0 (unknown) and are never dropped.
    "ALTER TABLE events ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) ==
              Store::kSchemaVersion);

// SQLITE_FULL (the disk is full; SQLite rolled the statement back) is
// RESOURCE_EXHAUSTED naming the disk: the operator's to fix, and the same
// commit succeeds once space returns. Anything else is INTERNAL.
absl::Status SqlStatus(int code, absl::string_view message) {
  if ((code & 0xff) == SQLITE_FULL) {
    return absl::ResourceExhaustedError(
        absl::StrCat(message,
                     " (the disk of the coordinator's --data-dir is full; "
                     "nothing was stored)"));
  }
  return absl::InternalError(message);
}

absl::Status SqlError(sqlite3* db, absl::string_view what) {
  return SqlStatus(sqlite3_extended_errcode(db),
                   absl::StrCat("sqlite ", what, ": ", sqlite3_errmsg(db)));
}

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  absl::Status status() const {
    return rc_ == SQLITE_OK ? absl::OkStatus() : SqlError(db_, "prepare");
  }
  void Text(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()),
                      SQLITE_TRANSIENT);
  }
  void Blob(int i, const std::string& s) {
    sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()),
                      SQLITE_TRANSIENT);
  }
  void Int(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  // True while a row is available; errors become the status.
  absl::StatusOr<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqlError(db_, "step");
  }
  std::string ColumnBlob(int i) {
    const void* p = sqlite3_column_blob(stmt_, i);
    return std::string(static_cast<const char*>(p),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, i)));
  }
  int64_t ColumnInt(int i) { return sqlite3_column_int64(stmt_, i); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

absl::Status RunOnce(Stmt& stmt) {
  LEMO_RETURN_IF_ERROR(stmt.status());
  LEMO_ASSIGN_OR_RETURN(bool row, stmt.Step());
  (void)row;
  return absl::OkStatus();
}

template <typename Proto>
absl::StatusOr<Proto> ParseRow(const std::string& bytes,
                               absl::string_view what) {
  Proto p;
  if (!p.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat("store: corrupt ", what, " row"));
  }
  return p;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Create(const Options& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("data dir ", options.data_dir, ": ", ec.message()));
  }
  std::string path = options.data_dir + "/coordinator.db";
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(
          path.c_str(), &db,
          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
          nullptr) != SQLITE_OK) {
    absl::Status s = SqlError(db, absl::StrCat("open ", path));
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<Store> store(new Store(db));
  absl::MutexLock lock(&store->mu_);
  // WAL: readers never block the writer. synchronous=FULL: a commit survives
  // power loss, which the restart guarantee needs; state changes are rare
  // enough (per step) to afford the fsync.
  LEMO_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL;"), path);
  LEMO_RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL;"), path);
  LEMO_RETURN_IF_ERROR(store->Exec("PRAGMA busy_timeout=5000;"), path);
  LEMO_RETURN_IF_ERROR(store->Migrate(), path);
  return store;
}

Store::~Store() {
  absl::MutexLock lock(&mu_);
  sqlite3_close(db_);
}

absl::Status Store::Exec(const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    absl::Status s = SqlStatus(rc, absl::StrCat("sqlite: ", err ? err : "?"));
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

absl::Status Store::Migrate() {
  Stmt get(db_, "PRAGMA user_version;");
  LEMO_RETURN_IF_ERROR(get.status());
  LEMO_ASSIGN_OR_RETURN(bool row, get.Step());
  int version = row ? static_cast<int>(get.ColumnInt(0)) : 0;
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database schema v", version, " is newer than this coordinator (v",
        kSchemaVersion, ")"));
  }
  for (int v = version; v < kSchemaVersion; ++v) {
    LEMO_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE;"));
    absl::Status s = Exec(kMigrations[v]);
    if (s.ok()) s = Exec(absl::StrCat("PRAGMA user_version=", v + 1, ";"));
    if (!s.ok()) {
      Exec("ROLLBACK;").IgnoreError();
      return WithContext(s, absl::StrCat("migrating schema to v", v + 1));
    }
    LEMO_RETURN_IF_ERROR(Exec("COMMIT;"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Store::SchemaVersion() {
  absl::MutexLock lock(&mu_);
  Stmt get(db_, "PRAGMA user_version;");
  LEMO_RETURN_IF_ERROR(get.status());
  LEMO_ASSIGN_OR_RETURN(bool row, get.Step());
  return row ? static_cast<int>(get.ColumnInt(0)) : 0;
}

absl::Status Store::Apply(const Mutation& m) {
  if (m.job.has_value()) {
    Stmt st(db_,
            "INSERT INTO jobs (id, state, job, owner) VALUES (?1, ?2, ?3, ?4)"
            " ON CONFLICT(id) DO UPDATE SET state = excluded.state,"
            " job = excluded.job, owner = excluded.owner;");
    st.Text(1, m.job->id());
    st.Int(2, m.job->state());
    st.Blob(3, m.job->SerializeAsString());
    st.Text(4, m.job->owner());
    LEMO_RETURN_IF_ERROR(RunOnce(st), "writing job " + m.job->id());
  }
  for (const v1::JobEvent& e : m.events) {
    Stmt st(db_,
            "INSERT INTO events (job_id, sequence, event, kind)"
            " VALUES (?1, ?2, ?3, ?4);");
    st.Text(1, e.job_id());
    st.Int(2, e.sequence());
    st.Blob(3, e.SerializeAsString());
    st.Int(4, static_cast<int64_t>(e.kind_case()));
    LEMO_RETURN_IF_ERROR(
        RunOnce(st),
        absl::StrCat("appending event ", e.sequence(), " of ", e.job_id()));
  }
  for (const v1::CheckpointInfo& c : m.add_checkpoints) {
    Stmt st(
        db_,
        "INSERT OR REPLACE INTO checkpoints (job_id, checkpoint_id, step, info)"
        " VALUES (?1, ?2, ?3, ?4);");
    st.Text(1, c.job_id());
    st.Text(2, c.checkpoint_id());
    st.Int(3, c.step());
    st.Blob(4, c.SerializeAsString());
    LEMO_RETURN_IF_ERROR(RunOnce(st),
                         "writing checkpoint " + c.checkpoint_id());
  }
  for (const auto& [job_id, checkpoint_id] : m.remove_checkpoints) {
    Stmt st(
        db_,
        "DELETE FROM checkpoints WHERE job_id = ?1 AND checkpoint_id = ?2;");
    st.Text(1, job_id);
    st.Text(2, checkpoint_id);
    LEMO_RETURN_IF_ERROR(RunOnce(st), "removing checkpoint " + checkpoint_id);
  }
  for (const std::string& job_id : m.remove_jobs) {
    for (const char* sql : {"DELETE FROM events WHERE job_id = ?1;",
                            "DELETE FROM checkpoints WHERE job_id = ?1;",
                            "DELETE FROM jobs WHERE id = ?1;"}) {
      Stmt st(db_, sql);
      st.Text(1, job_id);
      LEMO_RETURN_IF_ERROR(RunOnce(st), "removing job " + job_id);
    }
  }
  if (m.trim_events.has_value()) {
    // The primary key (job_id, sequence) bounds the scan to the job's oldest
    // rows; what is left below the cut is only kept kinds.
    Stmt st(db_,
            "DELETE FROM events WHERE job_id = ?1 AND sequence <= ?2"
            " AND kind IN (?3, ?4);");
    st.Text(1, m.trim_events->first);
    st.Int(2, m.trim_events->second);
    st.Int(3, v1::JobEvent::kMetric);
    st.Int(4, v1::JobEvent::kLog);
    LEMO_RETURN_IF_ERROR(RunOnce(st),
                         "dropping old events of " + m.trim_events->first);
  }
  return absl::OkStatus();
}

absl::Status Store::Commit(const Mutation& m) {
  absl::MutexLock lock(&mu_);
  LEMO_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE;"));
  absl::Status s = Apply(m);
  if (s.ok()) s = Exec("COMMIT;");
  if (!s.ok()) Exec("ROLLBACK;").IgnoreError();
  return s;
}

absl::StatusOr<std::vector<v1::Job>> Store::LoadJobs() {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, "SELECT job, owner FROM jobs ORDER BY seq;");
  LEMO_RETURN_IF_ERROR(st.status());
  std::vector<v1::Job> jobs;
  while (true) {
    LEMO_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    LEMO_ASSIGN_OR_RETURN(v1::Job job,
                          ParseRow<v1::Job>(st.ColumnBlob(0), "job"));
    // The column is the owner of record: rows written before it existed have
    // '' there whatever their blob says.
    job.set_owner(st.ColumnBlob(1));
    jobs.push_back(std::move(job));
  }
  return jobs;
}

absl::StatusOr<v1::Job> Store::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, "SELECT job, owner FROM jobs WHERE id = ?1;");
  LEMO_RETURN_IF_ERROR(st.status());
  st.Text(1, job_id);
  LEMO_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row)
    return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  LEMO_ASSIGN_OR_RETURN(v1::Job job,
                        ParseRow<v1::Job>(st.ColumnBlob(0), "job"));
  job.set_owner(st.ColumnBlob(1));
  return job;
}

absl::StatusOr<std::vector<v1::JobEvent>> Store::ReadEvents(
    const std::string& job_id, int64_t from_sequence, int limit) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_,
          "SELECT event FROM events WHERE job_id = ?1 AND sequence >= ?2"
          " ORDER BY sequence LIMIT ?3;");
  LEMO_RETURN_IF_ERROR(st.status());
  st.Text(1, job_id);
  st.Int(2, from_sequence);
  st.Int(3, limit);
  std::vector<v1::JobEvent> events;
  while (true) {
    LEMO_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    LEMO_ASSIGN_OR_RETURN(v1::JobEvent e,
                          ParseRow<v1::JobEvent>(st.ColumnBlob(0), "event"));
    events.push_back(std::move(e));
  }
  return events;
}

absl::StatusOr<std::vector<v1::CheckpointInfo>> Store::ListCheckpoints(
    const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_,
          "SELECT info FROM checkpoints WHERE job_id = ?1"
          " ORDER BY step, checkpoint_id;");
  LEMO_RETURN_IF_ERROR(st.status());
  st.Text(1, job_id);
  std::vector<v1::CheckpointInfo> out;
  while (true) {
    LEMO_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    LEMO_ASSIGN_OR_RETURN(
        v1::CheckpointInfo c,
        ParseRow<v1::CheckpointInfo>(st.ColumnBlob(0), "checkpoint"));
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace lemo::server
