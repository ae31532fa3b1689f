# Third-party libraries from Debian's packages (scripts/bootstrap installs them).
find_package(Threads REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(GTest CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE IMPORTED_TARGET sentencepiece)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG QUIET)
find_package(SQLite3 REQUIRED)
find_package(yaml-cpp CONFIG QUIET)
find_package(prometheus-cpp CONFIG QUIET)
# SHA-256 for checkpoint checksums (worker/engine/formats/atomic_file).
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
