# Third-party libraries from Debian's packages (scripts/bootstrap installs them).
find_package(Threads REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
find_package(GTest CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE IMPORTED_TARGET sentencepiece)
# tokenizer.json support (worker/engine/data/hf_tokenizer.cc): PCRE2 for the pre-tokenizer regexes
# (Unicode properties, look-ahead, JIT), ICU for the NFC/NFKC normalizers.
pkg_check_modules(PCRE2 IMPORTED_TARGET libpcre2-8)
pkg_check_modules(ICU_UC IMPORTED_TARGET icu-uc)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG QUIET)
find_package(SQLite3 REQUIRED)
find_package(yaml-cpp CONFIG QUIET)
find_package(prometheus-cpp CONFIG QUIET)
