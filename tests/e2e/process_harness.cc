#include "tests/e2e/process_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace lemo::e2e {
namespace {

// A socket connected to 127.0.0.1:port, or -1.
int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

}  // namespace

bool WaitForPort(int port, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int fd = ConnectLoopback(port);
    if (fd >= 0) {
      close(fd);
      return true;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

std::string BinPath(const std::string& name) {
  return EnvOr("LEMO_BIN_DIR", ".") + "/" + name;
}

std::string SourcePath(const std::string& relative) {
  return EnvOr("LEMO_SOURCE_DIR", ".") + "/" + relative;
}

Process::~Process() {
  if (!exit_code_.has_value()) Kill();
}

void Process::Signal(int sig) {
  if (!exit_code_.has_value()) kill(pid_, sig);
}

void Process::Kill() {
  Signal(SIGKILL);
  Wait(absl::Seconds(30));
}

std::optional<int> Process::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!exit_code_.has_value()) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ =
          WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (r < 0) {
      exit_code_ = -1;
      break;
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return exit_code_;
}

bool Process::Running() { return !Wait(absl::ZeroDuration()).has_value(); }

std::string Process::Log() const {
  std::ifstream in(log_path_, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

ProcessHarness::ProcessHarness(std::string log_dir)
    : log_dir_(std::move(log_dir)) {
  std::filesystem::create_directories(log_dir_);
}

ProcessHarness::~ProcessHarness() {
  // Workers first, so they do not spin reconnecting to a dead coordinator
  // meanwhile.
  for (auto it = processes_.rbegin(); it != processes_.rend(); ++it) {
    (*it)->Signal(SIGTERM);
  }
  for (auto& p : processes_) {
    if (!p->Wait(absl::Seconds(10)).has_value()) p->Kill();
  }
}

Process* ProcessHarness::Start(const std::string& name,
                               const std::vector<std::string>& argv,
                               const std::vector<std::string>& env) {
  const std::string log_path = absl::StrCat(log_dir_, "/", name, ".log");
  {
    std::ofstream(log_path, std::ios::app)
        << "$ " << absl::StrJoin(argv, " ") << "\n";
  }
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The child's environment, built before fork (the child only execs).
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string var(*e);
    const std::string key = var.substr(0, var.find('='));
    bool replaced = false;
    for (const std::string& add : env) {
      replaced = replaced || add.substr(0, add.find('=')) == key;
    }
    if (!replaced) env_strings.push_back(var);
  }
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  if (!env.empty()) {
    std::ofstream(log_path, std::ios::app)
        << "$ env: " << absl::StrJoin(env, " ") << "\n";
  }
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    std::abort();
  }
  if (pid == 0) {
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    // The child gets its own process group, so a signal to the test does not
    // reach it.
    setpgid(0, 0);
    execve(args[0], args.data(), envp.data());
    std::fprintf(stderr, "exec %s failed\n", args[0]);
    _exit(127);
  }
  processes_.push_back(std::make_unique<Process>(name, pid, log_path));
  return processes_.back().get();
}

absl::StatusOr<int> WaitForPortFile(Process& process, const std::string& path,
                                    const std::string& key,
                                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    std::ifstream in(path);
    if (in) {
      const std::string text(std::istreambuf_iterator<char>(in), {});
      const std::string quoted = absl::StrCat("\"", key, "\":");
      const size_t at = text.find(quoted);
      int port = 0;
      if (at == std::string::npos ||
          !absl::SimpleAtoi(
              absl::StripAsciiWhitespace(absl::string_view(text).substr(
                  at + quoted.size(),
                  text.find_first_of(",}", at) - at - quoted.size())),
              &port)) {
        return absl::DataLossError(
            absl::StrCat(path, ": no port \"", key, "\" in: ", text));
      }
      return port;
    }
    if (!process.Running()) {
      return absl::FailedPreconditionError(
          absl::StrCat(process.name(), " exited (code ",
                       process.Wait(absl::ZeroDuration()).value_or(-1),
                       ") before writing ", path));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(process.name(), " wrote no ", path, " within ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

int ProcessHarness::RunToCompletion(const std::string& name,
                                    const std::vector<std::string>& argv,
                                    absl::Duration timeout) {
  Process* p = Start(name, argv);
  std::optional<int> code = p->Wait(timeout);
  if (!code.has_value()) {
    p->Kill();
    return -1;
  }
  return *code;
}

void ProcessHarness::PrintLogs(size_t max_bytes_each) const {
  for (const auto& p : processes_) {
    std::string log = p->Log();
    if (log.size() > max_bytes_each) {
      log = "...\n" + log.substr(log.size() - max_bytes_each);
    }
    std::fprintf(stderr, "===== %s (pid %d) log =====\n%s\n", p->name().c_str(),
                 static_cast<int>(p->pid()), log.c_str());
  }
}

}  // namespace lemo::e2e
