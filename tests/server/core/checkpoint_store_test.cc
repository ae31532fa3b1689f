// Checkpoint store: chunked sha256-verified uploads, atomic commit, streamed
// download, and repair of what a crash left. To add a case: a TEST that feeds
// chunks to an Upload and checks the outcome on disk; for a crash, build the
// on-disk state the crash would leave (Reopen() is a coordinator restart).
#include "server/core/checkpoint_store.h"
#include "common/sha256.h"

#include <filesystem>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "tests/server/test_util.h"
#include "tests/testing/file_tree.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeTempDir;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

v1::UploadCheckpointRequest Chunk(const std::string& file, int64_t offset,
                                  const std::string& data,
                                  const std::string& sha = "") {
  v1::UploadCheckpointRequest c;
  c.set_job_id("job-1");
  c.set_epoch(1);
  c.set_step(20);
  c.set_checkpoint_id("step-20");
  c.set_file_name(file);
  c.set_offset(offset);
  c.set_data(data);
  c.set_sha256(sha);
  return c;
}

class CheckpointStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("ckpt");
    CheckpointStore::Options o;
    o.root = root_;
    o.chunk_bytes = 4;  // Tiny chunks so every test crosses chunk boundaries.
    auto s = CheckpointStore::Create(o);
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
  }
  // Uploads files {name: contents} in 4-byte chunks and commits.
  absl::StatusOr<v1::CheckpointInfo> UploadAll(
      const std::vector<std::pair<std::string, std::string>>& files) {
    auto upload = store_->BeginUpload(Chunk("", 0, ""));
    if (!upload.ok()) return upload.status();
    for (const auto& [name, data] : files) {
      for (size_t off = 0; off == 0 || off < data.size(); off += 4) {
        bool last = off + 4 >= data.size();
        absl::Status s = (*upload)->Add(
            Chunk(name, off, data.substr(off, 4), last ? Sha256Hex(data) : ""));
        if (!s.ok()) return s;
      }
    }
    return (*upload)->Commit();
  }

  // A coordinator restart: a new store over the same root.
  void Reopen() {
    store_.reset();
    CheckpointStore::Options o;
    o.root = root_;
    o.chunk_bytes = 4;
    auto s = CheckpointStore::Create(o);
    ASSERT_THAT(s, IsOk());
    store_ = std::move(*s);
  }

  std::string root_;
  std::unique_ptr<CheckpointStore> store_;
};

TEST_F(CheckpointStoreTest, UploadCommitsAndDownloadsTheSameBytes) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      v1::CheckpointInfo info,
      UploadAll({{"adapter_config.json", "{\"r\": 8}"},
                 {"resume/trainer_state.json", "{\"step\": 20, \"x\": 1}"}}));
  ASSERT_EQ(info.files_size(), 2);
  EXPECT_EQ(info.files(1).name(), "resume/trainer_state.json");
  EXPECT_EQ(info.total_bytes(), 8 + 20);
  EXPECT_TRUE(std::filesystem::exists(
      root_ + "/job-1/step-20/resume/trainer_state.json"));
  std::map<std::string, std::string> got;
  std::map<std::string, std::string> sums;
  int first_with_info = 0;
  LEMO_ASSERT_OK(store_->Download(info, [&](const v1::CheckpointChunk& c) {
    EXPECT_EQ(c.offset(), static_cast<int64_t>(got[c.file_name()].size()));
    got[c.file_name()] += c.data();
    if (!c.sha256().empty()) sums[c.file_name()] = c.sha256();
    first_with_info += c.has_checkpoint() ? 1 : 0;
    return true;
  }));
  EXPECT_EQ(got["adapter_config.json"], "{\"r\": 8}");
  EXPECT_EQ(sums["adapter_config.json"], Sha256Hex("{\"r\": 8}"));
  EXPECT_EQ(got["resume/trainer_state.json"], "{\"step\": 20, \"x\": 1}");
  EXPECT_EQ(first_with_info, 1);
}

TEST_F(CheckpointStoreTest, WrongSha256IsRejectedAndNothingStays) {
  {
    LEMO_ASSERT_OK_AND_ASSIGN(auto upload,
                              store_->BeginUpload(Chunk("", 0, "")));
    EXPECT_THAT(upload->Add(Chunk("a.bin", 0, "abcd", Sha256Hex("abce"))),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("a.bin: sha256 mismatch")));
  }
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/job-1"));
}

TEST_F(CheckpointStoreTest, UnsafeFileNamesAreRejected) {
  for (const char* bad :
       {"../evil", "/etc/passwd", "a//b", "sp ace", "a/./b"}) {
    LEMO_ASSERT_OK_AND_ASSIGN(auto upload,
                              store_->BeginUpload(Chunk("", 0, "")));
    EXPECT_THAT(
        upload->Add(Chunk(bad, 0, "x", Sha256Hex("x"))),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("file_name")))
        << bad;
  }
  v1::UploadCheckpointRequest bad_id = Chunk("", 0, "");
  bad_id.set_checkpoint_id("../x");
  EXPECT_THAT(
      store_->BeginUpload(bad_id),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("checkpoint_id")));
}

TEST_F(CheckpointStoreTest, OffsetsMustBeContiguous) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto upload, store_->BeginUpload(Chunk("", 0, "")));
  LEMO_ASSERT_OK(upload->Add(Chunk("a", 0, "abcd")));
  EXPECT_THAT(upload->Add(Chunk("a", 8, "efgh")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("chunk at offset 8, expected 4")));
}

TEST_F(CheckpointStoreTest, UnfinishedFileCannotBeCommitted) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto upload, store_->BeginUpload(Chunk("", 0, "")));
  LEMO_ASSERT_OK(upload->Add(Chunk("a", 0, "abcd")));
  EXPECT_THAT(upload->Commit(), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("without its sha256")));
  EXPECT_THAT(
      upload->Add(Chunk("b", 0, "x", Sha256Hex("x"))),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ended without")));
}

TEST_F(CheckpointStoreTest, HeaderMayNotChangeMidUpload) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto upload, store_->BeginUpload(Chunk("", 0, "")));
  v1::UploadCheckpointRequest c = Chunk("a", 0, "x", Sha256Hex("x"));
  c.set_epoch(2);
  EXPECT_THAT(upload->Add(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("must not change")));
}

TEST_F(CheckpointStoreTest, OversizedChunkIsRejected) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto upload, store_->BeginUpload(Chunk("", 0, "")));
  EXPECT_THAT(
      upload->Add(Chunk("a", 0, "toolong")),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunk larger")));
}

TEST_F(CheckpointStoreTest, CorruptedFileFailsDownloadWithDataLoss) {
  LEMO_ASSERT_OK_AND_ASSIGN(v1::CheckpointInfo info,
                            UploadAll({{"a", "abcdefgh"}}));
  std::ofstream(root_ + "/job-1/step-20/a", std::ios::binary) << "abcdefgX";
  EXPECT_THAT(
      store_->Download(info, [](const v1::CheckpointChunk&) { return true; }),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("no longer matches")));
}

TEST_F(CheckpointStoreTest, RemoveDeletesTheDirectory) {
  LEMO_ASSERT_OK(UploadAll({{"a", "abc"}}).status());
  LEMO_ASSERT_OK(store_->Remove("job-1", "step-20"));
  EXPECT_FALSE(std::filesystem::exists(root_ + "/job-1/step-20"));
}

TEST_F(CheckpointStoreTest, ReuploadReplacesTheBytesAndLeavesNoStaging) {
  LEMO_ASSERT_OK(UploadAll({{"a", "old bytes"}}).status());
  LEMO_ASSERT_OK_AND_ASSIGN(v1::CheckpointInfo info,
                            UploadAll({{"a", "new bytes!"}}));
  EXPECT_EQ(::lemo::testing::ReadTree(root_ + "/job-1/step-20"),
            (::lemo::testing::FileTree{{"a", "new bytes!"}}));
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(root_ + "/job-1")) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "step-20");
  }
  EXPECT_EQ(entries, 1);
}

// A crash during a re-upload on a filesystem without RENAME_EXCHANGE, after
// the old copy was moved aside and before the new one was renamed in: the
// store restarts with the old copy back in place, the staged one gone.
TEST_F(CheckpointStoreTest, RestartRestoresTheOldCopyOfACutShortReplace) {
  const std::string job = root_ + "/job-1";
  ::lemo::testing::WriteTree(job + "/step-20.old-4242-3", {{"a", "old bytes"}});
  ::lemo::testing::WriteTree(job + "/step-20.tmp-4242-2",
                             {{"a", "new bytes!"}});
  Reopen();
  EXPECT_EQ(::lemo::testing::ReadTree(job + "/step-20"),
            (::lemo::testing::FileTree{{"a", "old bytes"}}));
  EXPECT_FALSE(std::filesystem::exists(job + "/step-20.old-4242-3"));
  EXPECT_FALSE(std::filesystem::exists(job + "/step-20.tmp-4242-2"));
  EXPECT_EQ(store_->recovered().restored, 1);
  EXPECT_EQ(store_->recovered().removed, 1);
}

// The crash came after the new copy was renamed in: the backup is the stale
// one and goes; the new copy stays.
TEST_F(CheckpointStoreTest, RestartDropsTheBackupOfAFinishedReplace) {
  const std::string job = root_ + "/job-1";
  ::lemo::testing::WriteTree(job + "/step-20", {{"a", "new bytes!"}});
  ::lemo::testing::WriteTree(job + "/step-20.old-4242-3", {{"a", "old bytes"}});
  Reopen();
  EXPECT_EQ(::lemo::testing::ReadTree(job + "/step-20"),
            (::lemo::testing::FileTree{{"a", "new bytes!"}}));
  EXPECT_FALSE(std::filesystem::exists(job + "/step-20.old-4242-3"));
}

// Uploads cut off mid-stream (a staged directory and a half-written file)
// are deleted at start; finished checkpoints are untouched.
TEST_F(CheckpointStoreTest, RestartDeletesOrphanedUploads) {
  LEMO_ASSERT_OK(UploadAll({{"a", "kept"}}).status());
  const std::string job = root_ + "/job-1";
  ::lemo::testing::WriteTree(job + "/step-40.tmp-17-0", {{"a", "half"}});
  ::lemo::testing::WriteTree(root_ + "/job-2/step-5.tmp-17-1/resume",
                             {{"x", "y"}});
  std::ofstream(job + "/notes.tmp-17-2") << "partial";
  Reopen();
  EXPECT_FALSE(std::filesystem::exists(job + "/step-40.tmp-17-0"));
  EXPECT_FALSE(std::filesystem::exists(root_ + "/job-2/step-5.tmp-17-1"));
  EXPECT_FALSE(std::filesystem::exists(job + "/notes.tmp-17-2"));
  EXPECT_EQ(store_->recovered().removed, 3);
  EXPECT_EQ(::lemo::testing::ReadTree(job + "/step-20"),
            (::lemo::testing::FileTree{{"a", "kept"}}));
}

// Every instant of a commit, as the crash there leaves the disk: the store
// restarts (Reopen) holding a complete copy, old or new, under the
// checkpoint's own name, verified against its sha256 by a download, and no
// staging name. The steps (common/atomic_file.cc, AtomicDirectory::Commit):
// the upload writes <id>.tmp-<pid>-<n> and fsyncs it; then either one
// renameat2(RENAME_EXCHANGE) (the old copy now under the .tmp- name, then
// deleted), or, on filesystems without it, rename <id> -> <id>.old-<pid>-<n>,
// rename .tmp -> <id>, delete the .old. A first upload has no old copy: a
// crash before its rename leaves no checkpoint, which was never acknowledged
// nor recorded. Recovery itself is cut short too (its restore done, its
// deletes not), and a second restart must change nothing.
TEST_F(CheckpointStoreTest, ACrashAtAnyStepOfACommitLeavesAValidCopy) {
  using ::lemo::testing::FileTree;
  using ::lemo::testing::WriteTree;
  const FileTree old_copy = {{"adapter.bin", "old weights"},
                             {"resume/state.json", "{\"step\": 20}"}};
  const FileTree new_copy = {{"adapter.bin", "new weights, longer"},
                             {"resume/state.json", "{\"step\": 20, \"n\": 2}"}};
  // A copy cut short: one file missing, another truncated.
  const FileTree new_partial = {{"adapter.bin", "new wei"}};
  const FileTree old_partial = {{"resume/state.json", "{\"st"}};
  const std::string job = root_ + "/job-1";
  const std::string id = job + "/step-20";
  const std::string tmp = id + ".tmp-4242-7";
  const std::string old = id + ".old-4242-8";
  enum Survivor { kNone, kOld, kNew };
  struct Case {
    const char* when;
    std::vector<std::pair<std::string, FileTree>> dirs;
    Survivor survivor;
  };
  const std::vector<Case> cases = {
      {"first upload, staging half written", {{tmp, new_partial}}, kNone},
      {"first upload, staging complete, not renamed", {{tmp, new_copy}}, kNone},
      {"first upload, renamed in", {{id, new_copy}}, kNew},
      {"replace, staging half written",
       {{id, old_copy}, {tmp, new_partial}},
       kOld},
      {"replace, staging complete, not swapped",
       {{id, old_copy}, {tmp, new_copy}},
       kOld},
      {"exchange done, old copy not yet deleted",
       {{id, new_copy}, {tmp, old_copy}},
       kNew},
      {"exchange done, old copy half deleted",
       {{id, new_copy}, {tmp, old_partial}},
       kNew},
      {"no exchange: old moved aside, new not renamed in",
       {{old, old_copy}, {tmp, new_copy}},
       kOld},
      {"no exchange: new renamed in, old not yet deleted",
       {{id, new_copy}, {old, old_copy}},
       kNew},
      {"no exchange: new renamed in, old half deleted",
       {{id, new_copy}, {old, old_partial}},
       kNew},
      {"recovery cut short: old restored, staging not deleted",
       {{id, old_copy}, {tmp, new_copy}},
       kOld},
      {"replace finished", {{id, new_copy}}, kNew},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.when);
    std::filesystem::remove_all(job);
    std::filesystem::create_directories(job);
    for (const auto& [dir, tree] : c.dirs) WriteTree(dir, tree);
    for (int restart = 0; restart < 2; ++restart) {
      SCOPED_TRACE(absl::StrCat("restart ", restart + 1));
      Reopen();
      std::vector<std::string> names;
      for (const auto& e : std::filesystem::directory_iterator(job)) {
        names.push_back(e.path().filename().string());
      }
      if (c.survivor == kNone) {
        EXPECT_TRUE(names.empty()) << names.size() << " entries left";
        continue;
      }
      EXPECT_EQ(names, std::vector<std::string>{"step-20"});
      const FileTree& want = c.survivor == kOld ? old_copy : new_copy;
      ASSERT_TRUE(std::filesystem::is_directory(id));
      EXPECT_EQ(::lemo::testing::ReadTree(id), want);
      // What the store's record of that copy lists: the download re-hashes
      // every file against it.
      v1::CheckpointInfo info;
      info.set_job_id("job-1");
      info.set_checkpoint_id("step-20");
      for (const auto& [name, bytes] : want) {
        v1::CheckpointFile* f = info.add_files();
        f->set_name(name);
        f->set_size_bytes(static_cast<int64_t>(bytes.size()));
        f->set_sha256(Sha256Hex(bytes));
      }
      EXPECT_THAT(store_->Download(
                      info, [](const v1::CheckpointChunk&) { return true; }),
                  IsOk());
    }
  }
}

// A checkpoint named like a staging directory would be deleted (or worse,
// renamed over another) at the next start, so it is refused at upload.
TEST_F(CheckpointStoreTest, StagingNamesAreRefusedAsCheckpointIds) {
  v1::UploadCheckpointRequest c = Chunk("", 0, "");
  for (const char* id : {"step-20.tmp-1-2", "step-20.old-1-2"}) {
    c.set_checkpoint_id(id);
    EXPECT_THAT(store_->BeginUpload(c),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("checkpoint_id: must not end in .tmp-")))
        << id;
  }
  c.set_checkpoint_id("step-20.tmp-x");  // not a staging name
  EXPECT_THAT(store_->BeginUpload(c), IsOk());
}

// Sizes come from the worker's first message (total_bytes), so a store that
// cannot hold the checkpoint says so before any byte is written.
TEST_F(CheckpointStoreTest, DeclaredTotalAboveTheLimitIsResourceExhausted) {
  CheckpointStore::Options o;
  o.root = MakeTempDir("ckpt-limit");
  o.max_checkpoint_bytes = 100;
  LEMO_ASSERT_OK_AND_ASSIGN(auto store, CheckpointStore::Create(o));
  v1::UploadCheckpointRequest first = Chunk("", 0, "");
  first.set_total_bytes(101);
  EXPECT_THAT(store->BeginUpload(first),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("checkpoint step-20: 101 bytes, more than "
                                 "the store's limit of 100 bytes "
                                 "(--max-checkpoint-bytes)")));
  first.set_total_bytes(-1);
  EXPECT_THAT(
      store->BeginUpload(first),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("total_bytes")));
}

// The real disk: declare a gigabyte more than it has free.
TEST_F(CheckpointStoreTest, DeclaredTotalPastTheFreeDiskIsResourceExhausted) {
  CheckpointStore::Options o;
  o.root = MakeTempDir("ckpt-disk");
  o.max_checkpoint_bytes = std::numeric_limits<int64_t>::max() / 2;
  LEMO_ASSERT_OK_AND_ASSIGN(auto store, CheckpointStore::Create(o));
  LEMO_ASSERT_OK_AND_ASSIGN(int64_t free, FreeBytes(o.root));
  v1::UploadCheckpointRequest first = Chunk("", 0, "");
  first.set_total_bytes(free + (int64_t{1} << 30));
  EXPECT_THAT(store->BeginUpload(first),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr(absl::StrCat(free + (int64_t{1} << 30),
                                              " bytes do not fit: "))));
  EXPECT_FALSE(std::filesystem::exists(o.root + "/job-1"));
}

TEST_F(CheckpointStoreTest, AnUploadIsHeldToItsDeclaredTotal) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto upload, [&] {
    v1::UploadCheckpointRequest first = Chunk("", 0, "");
    first.set_total_bytes(4);
    return store_->BeginUpload(first);
  }());
  LEMO_EXPECT_OK(upload->Add(Chunk("a", 0, "abcd")));
  EXPECT_THAT(upload->Add(Chunk("a", 4, "efgh", Sha256Hex("abcdefgh"))),
              Not(IsOk()));
}

// The automatic limit never promises more than the disk has.
TEST_F(CheckpointStoreTest, AutomaticLimitIsAtMostTheFreeSpace) {
  EXPECT_GT(store_->options().max_checkpoint_bytes, 0);
  EXPECT_LE(store_->options().max_checkpoint_bytes, int64_t{64} << 30);
  LEMO_ASSERT_OK_AND_ASSIGN(int64_t free, FreeBytes(root_));
  // The disk may have gained a little since Create().
  EXPECT_LE(store_->options().max_checkpoint_bytes, free + (int64_t{64} << 20));
}

}  // namespace
}  // namespace lemo::server
