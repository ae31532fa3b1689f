// Job specs shared by the tests of everything that checks or runs one (the
// spec validation below proto/, the coordinator, lemoctl).
//
//   v1::JobSpec spec = ValidSpec();
//   spec.set_steps(-1);  // one field broken
#ifndef LEMO_TESTS_TESTING_JOB_SPECS_H_
#define LEMO_TESTS_TESTING_JOB_SPECS_H_

#include "lemo/v1/job_spec.pb.h"

namespace lemo::testing {

// The smallest spec that passes validation (paths need not exist: workers check
// them).
inline v1::JobSpec ValidSpec() {
  v1::JobSpec spec;
  spec.set_display_name("test");
  spec.mutable_model()->set_path("/models/tiny");
  spec.mutable_data()->set_path("/data/corpus.jsonl");
  spec.set_seq_len(128);
  spec.set_steps(10);
  return spec;
}

}  // namespace lemo::testing

#endif  // LEMO_TESTS_TESTING_JOB_SPECS_H_
