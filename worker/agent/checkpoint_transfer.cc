#include "worker/agent/checkpoint_transfer.h"

#include <filesystem>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/channel.h"
#include "common/fault_point.h"
#include "common/status_macros.h"
#include "proto/status/grpc_status.h"

namespace lemo::worker {

using client::AddBearerToken;

absl::Status ForEachUploadMessage(
    const std::string& dir, const UploadTarget& target,
    const std::function<absl::Status(const v1::UploadCheckpointRequest&)>&
        emit) {
  v1::UploadCheckpointRequest msg;
  msg.set_job_id(target.job_id);
  msg.set_epoch(target.epoch);
  msg.set_step(target.step);
  msg.set_checkpoint_id(target.checkpoint_id);
  // Declared up front so a coordinator short of disk says so before any byte
  // travels; the engine never changes a checkpoint directory once written.
  int64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec)) total += static_cast<int64_t>(e.file_size(ec));
  }
  if (!ec) msg.set_total_bytes(total);
  return SendChunkedDirectory(dir, kCheckpointChunkBytes,
                              [&](const FileChunk& chunk) {
                                msg.set_file_name(std::string(chunk.file_name));
                                msg.set_offset(chunk.offset);
                                msg.set_data(std::string(chunk.data));
                                msg.set_sha256(std::string(chunk.sha256));
                                absl::Status s = emit(msg);
                                msg.clear_total_bytes();  // first message only
                                return s;
                              });
}

absl::StatusOr<v1::CheckpointInfo> UploadCheckpoint(
    v1::WorkerService::StubInterface& stub, const std::string& token,
    const std::string& dir, const UploadTarget& target) {
  grpc::ClientContext ctx;
  AddBearerToken(&ctx, token);
  v1::CheckpointInfo info;
  std::unique_ptr<grpc::ClientWriterInterface<v1::UploadCheckpointRequest>>
      writer = stub.UploadCheckpoint(&ctx, &info);
  bool first = true;
  absl::Status emitted = ForEachUploadMessage(
      dir, target, [&](const v1::UploadCheckpointRequest& msg) {
        if (!writer->Write(msg)) {
          return absl::UnavailableError(
              "upload stream closed by the coordinator");
        }
        // Test-only crash hook: the coordinator holds part of the upload.
        if (first) FaultPoint("worker.upload.after_first_chunk");
        first = false;
        return absl::OkStatus();
      });
  if (!emitted.ok()) {
    // Closing without committing: cancel so the coordinator stores nothing.
    ctx.TryCancel();
    writer->Finish();
    return emitted;
  }
  FaultPoint("worker.upload.before_finish");  // test-only crash hook
  writer->WritesDone();
  LEMO_RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()),
                       absl::StrCat("uploading ", target.checkpoint_id));
  return info;
}

CheckpointReceiver::~CheckpointReceiver() = default;

absl::StatusOr<std::unique_ptr<CheckpointReceiver>> CheckpointReceiver::Create(
    const std::string& dest_dir, const v1::CheckpointInfo& expected) {
  ChunkedDirectoryReceiver::Options options;
  options.dest_dir = dest_dir;
  // Sizes are not compared (-1): a matching sha256 already pins the bytes, and
  // names with sums are all a caller must list.
  for (const v1::CheckpointFile& f : expected.files()) {
    options.expected.push_back({f.name(), -1, f.sha256()});
  }
  LEMO_ASSIGN_OR_RETURN(auto receiver,
                        ChunkedDirectoryReceiver::Create(std::move(options)));
  return std::unique_ptr<CheckpointReceiver>(
      new CheckpointReceiver(std::move(receiver)));
}

absl::Status CheckpointReceiver::Add(const v1::CheckpointChunk& chunk) {
  return receiver_->Add(
      {chunk.file_name(), chunk.offset(), chunk.data(), chunk.sha256()});
}

absl::Status CheckpointReceiver::Finish() { return receiver_->Commit(); }

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
