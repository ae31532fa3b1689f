#include "worker/agent/checkpoint_transfer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/channel.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "proto/status/grpc_status.h"

namespace lemo::worker {
namespace fs = std::filesystem;
using client::AddBearerToken;

struct CheckpointReceiver::OpenFile {
  std::string name;
  std::ofstream out;
  int64_t size = 0;
};

bool IsSafeRelativePath(const std::string& name) {
  if (name.empty() || name.front() == '/' ||
      name.find('\\') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    return false;
  }
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

absl::Status ForEachUploadMessage(
    const std::string& dir, const UploadTarget& target,
    const std::function<absl::Status(const v1::UploadCheckpointRequest&)>&
        emit) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file()) {
      names.push_back(fs::relative(it->path(), dir).generic_string());
    }
  }
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint ", dir, ": ", ec.message()));
  }
  if (names.empty()) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", dir, ": no files"));
  }
  std::sort(names.begin(), names.end());

  v1::UploadCheckpointRequest msg;
  msg.set_job_id(target.job_id);
  msg.set_epoch(target.epoch);
  msg.set_step(target.step);
  msg.set_checkpoint_id(target.checkpoint_id);
  std::string buffer(kCheckpointChunkBytes, '\0');
  for (const std::string& name : names) {
    const std::string path = (fs::path(dir) / name).string();
    // Hashed first so the closing chunk can carry it; a file changing under us
    // shows up as a sha256 mismatch on the coordinator.
    LEMO_ASSIGN_OR_RETURN(std::string sha256, Sha256File(path));
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
    const int64_t size = static_cast<int64_t>(fs::file_size(path, ec));
    int64_t offset = 0;
    do {
      const int64_t n = std::min<int64_t>(kCheckpointChunkBytes, size - offset);
      in.read(buffer.data(), n);
      if (in.gcount() != n) {
        return absl::DataLossError(
            absl::StrCat(path, ": short read at ", offset));
      }
      msg.set_file_name(name);
      msg.set_offset(offset);
      msg.set_data(buffer.data(), n);
      offset += n;
      msg.set_sha256(offset == size ? sha256 : "");
      LEMO_RETURN_IF_ERROR(emit(msg), name);
    } while (offset < size);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::CheckpointInfo> UploadCheckpoint(
    v1::WorkerService::StubInterface& stub, const std::string& token,
    const std::string& dir, const UploadTarget& target) {
  grpc::ClientContext ctx;
  AddBearerToken(&ctx, token);
  v1::CheckpointInfo info;
  std::unique_ptr<grpc::ClientWriterInterface<v1::UploadCheckpointRequest>>
      writer = stub.UploadCheckpoint(&ctx, &info);
  absl::Status emitted = ForEachUploadMessage(
      dir, target, [&](const v1::UploadCheckpointRequest& msg) {
        if (!writer->Write(msg)) {
          return absl::UnavailableError(
              "upload stream closed by the coordinator");
        }
        return absl::OkStatus();
      });
  if (!emitted.ok()) {
    // Closing without committing: cancel so the coordinator stores nothing.
    ctx.TryCancel();
    writer->Finish();
    return emitted;
  }
  writer->WritesDone();
  LEMO_RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()),
                       absl::StrCat("uploading ", target.checkpoint_id));
  return info;
}

CheckpointReceiver::CheckpointReceiver(std::unique_ptr<AtomicDirectory> staged,
                                       const v1::CheckpointInfo& expected)
    : staged_(std::move(staged)) {
  for (const v1::CheckpointFile& f : expected.files()) {
    expected_[f.name()] = f.sha256();
  }
}

CheckpointReceiver::~CheckpointReceiver() = default;

absl::StatusOr<std::unique_ptr<CheckpointReceiver>> CheckpointReceiver::Create(
    const std::string& dest_dir, const v1::CheckpointInfo& expected) {
  for (const v1::CheckpointFile& f : expected.files()) {
    if (!IsSafeRelativePath(f.name())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint lists an unsafe file name \"", f.name(), "\""));
    }
  }
  LEMO_ASSIGN_OR_RETURN(auto staged, AtomicDirectory::Create(dest_dir));
  return std::unique_ptr<CheckpointReceiver>(
      new CheckpointReceiver(std::move(staged), expected));
}

absl::Status CheckpointReceiver::Add(const v1::CheckpointChunk& chunk) {
  const std::string& name = chunk.file_name();
  if (open_ != nullptr && open_->name != name) {
    return absl::DataLossError(absl::StrCat(
        "file ", open_->name, " ended without a sha256 before ", name));
  }
  if (open_ == nullptr) {
    if (!IsSafeRelativePath(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unsafe file name \"", name, "\""));
    }
    if (done_.count(name) > 0) {
      return absl::DataLossError(absl::StrCat("file ", name, " sent twice"));
    }
    if (!expected_.empty() && expected_.count(name) == 0) {
      return absl::DataLossError(
          absl::StrCat("file ", name, " is not in the checkpoint's listing"));
    }
    const fs::path path = fs::path(staged_->path()) / name;
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    open_ = std::make_unique<OpenFile>();
    open_->name = name;
    open_->out.open(path, std::ios::binary | std::ios::trunc);
    if (!open_->out) {
      return absl::InternalError(absl::StrCat("cannot create ", path.string()));
    }
  }
  if (chunk.offset() != open_->size) {
    return absl::DataLossError(absl::StrCat("file ", name, ": chunk at offset ",
                                            chunk.offset(), ", expected ",
                                            open_->size));
  }
  open_->out.write(chunk.data().data(),
                   static_cast<std::streamsize>(chunk.data().size()));
  open_->size += static_cast<int64_t>(chunk.data().size());
  if (!open_->out) {
    return absl::InternalError(absl::StrCat("writing ", name, " failed"));
  }
  if (!chunk.sha256().empty()) return CloseFile(chunk.sha256());
  return absl::OkStatus();
}

absl::Status CheckpointReceiver::CloseFile(const std::string& sha256) {
  std::unique_ptr<OpenFile> file = std::move(open_);
  file->out.close();
  if (!file->out) {
    return absl::InternalError(absl::StrCat("closing ", file->name, " failed"));
  }
  const std::string path = (fs::path(staged_->path()) / file->name).string();
  LEMO_ASSIGN_OR_RETURN(std::string actual, Sha256File(path));
  if (actual != sha256) {
    return absl::DataLossError(absl::StrCat("file ", file->name, ": sha256 ",
                                            actual, ", the coordinator sent ",
                                            sha256));
  }
  auto it = expected_.find(file->name);
  if (it != expected_.end() && it->second != actual) {
    return absl::DataLossError(absl::StrCat("file ", file->name, ": sha256 ",
                                            actual, ", the checkpoint lists ",
                                            it->second));
  }
  done_[file->name] = actual;
  return absl::OkStatus();
}

absl::Status CheckpointReceiver::Finish() {
  if (open_ != nullptr) {
    return absl::DataLossError(
        absl::StrCat("file ", open_->name, " ended without a sha256"));
  }
  if (done_.empty()) return absl::DataLossError("checkpoint had no files");
  for (const auto& [name, sha256] : expected_) {
    if (done_.count(name) == 0) {
      return absl::DataLossError(absl::StrCat("file ", name, " never arrived"));
    }
  }
  return staged_->Commit();
}

absl::Status DownloadCheckpoint(v1::WorkerService::StubInterface& stub,
                                const std::string& token,
                                const std::string& job_id,
                                const std::string& checkpoint_id,
                                const v1::CheckpointInfo& expected,
                                const std::string& dest_dir) {
  LEMO_ASSIGN_OR_RETURN(auto receiver,
                        CheckpointReceiver::Create(dest_dir, expected));
  grpc::ClientContext ctx;
  AddBearerToken(&ctx, token);
  v1::WorkerDownloadCheckpointRequest request;
  request.set_job_id(job_id);
  request.set_checkpoint_id(checkpoint_id);
  auto reader = stub.DownloadCheckpoint(&ctx, request);
  v1::CheckpointChunk chunk;
  absl::Status received;
  while (received.ok() && reader->Read(&chunk)) {
    received = receiver->Add(chunk);
  }
  if (!received.ok()) {
    ctx.TryCancel();
    reader->Finish();
    return WithContext(received, absl::StrCat("checkpoint ", checkpoint_id));
  }
  LEMO_RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()),
                       absl::StrCat("downloading checkpoint ", checkpoint_id));
  return WithContext(receiver->Finish(),
                     absl::StrCat("checkpoint ", checkpoint_id));
}

}  // namespace lemo::worker
