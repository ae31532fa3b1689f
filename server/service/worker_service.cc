#include "server/service/worker_service.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/status_macros.h"

namespace lemo::server {

grpc::Status WorkerServiceImpl::Connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::WorkerMessage>*
        stream) {
  return RunStreamRpc(
      deps_, context, Api::kWorkers, "Connect",
      [&](const Principal& caller) -> absl::Status {
        v1::WorkerMessage message;
        // A peer that connects and stays silent would hold this thread for
        // ever: cancel the call once the register deadline passes.
        absl::Notification first_read;
        std::atomic<bool> timed_out{false};
        std::thread watchdog([&] {
          if (!first_read.WaitForNotificationWithTimeout(
                  deps_.register_timeout)) {
            timed_out = true;
            context->TryCancel();
          }
        });
        const bool got = stream->Read(&message);
        first_read.Notify();
        watchdog.join();
        if (timed_out) {
          return absl::DeadlineExceededError(
              absl::StrCat("no register message within ",
                           absl::FormatDuration(deps_.register_timeout),
                           " of connecting (--register-timeout)"));
        }
        if (!got) return absl::CancelledError("stream closed before register");
        if (!message.has_register_()) {
          return absl::InvalidArgumentError(
              "the first message must be register");
        }
        LEMO_ASSIGN_OR_RETURN(
            Coordinator::Session session,
            deps_.coordinator->Connect(caller, message.register_()));
        std::thread writer([&stream, outbox = session.outbox] {
          while (std::optional<v1::CoordinatorMessage> m = outbox->Pop()) {
            if (!stream->Write(*m)) break;
          }
        });
        absl::Status status = absl::OkStatus();
        while (status.ok() && stream->Read(&message)) {
          status = deps_.coordinator->OnWorkerMessage(session, message);
        }
        deps_.coordinator->Disconnect(session);
        session.outbox->Close();
        // A writer blocked on a peer that stopped reading is released by
        // cancelling the call.
        if (!status.ok()) context->TryCancel();
        writer.join();
        return status;
      });
}

grpc::Status WorkerServiceImpl::UploadCheckpoint(
    grpc::ServerContext* context,
    grpc::ServerReader<v1::UploadCheckpointRequest>* reader,
    v1::CheckpointInfo* response) {
  return RunStreamRpc(
      deps_, context, Api::kWorkers, "UploadCheckpoint",
      [&](const Principal& caller) -> absl::Status {
        v1::UploadCheckpointRequest chunk;
        if (!reader->Read(&chunk))
          return absl::InvalidArgumentError("empty upload");
        LEMO_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointStore::Upload> upload,
                              deps_.coordinator->BeginUpload(caller, chunk));
        do {
          LEMO_RETURN_IF_ERROR(upload->Add(chunk));
        } while (reader->Read(&chunk));
        // A stream cut between two files must not commit half a
        // checkpoint.
        if (context->IsCancelled())
          return absl::CancelledError("upload cancelled");
        LEMO_ASSIGN_OR_RETURN(*response,
                              deps_.coordinator->CommitUpload(*upload));
        return absl::OkStatus();
      });
}

grpc::Status WorkerServiceImpl::DownloadCheckpoint(
    grpc::ServerContext* context,
    const v1::WorkerDownloadCheckpointRequest* request,
    grpc::ServerWriter<v1::CheckpointChunk>* writer) {
  return RunStreamRpc(
      deps_, context, Api::kWorkers, "WorkerDownloadCheckpoint",
      [&](const Principal& caller) -> absl::Status {
        return deps_.coordinator->DownloadCheckpoint(
            caller, request->job_id(), request->checkpoint_id(),
            [&](const v1::CheckpointChunk& c) { return writer->Write(c); });
      });
}

}  // namespace lemo::server
