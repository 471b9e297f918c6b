// Exceptions of the C++ core. The bindings translate them: InvalidArgument -> ValueError,
// LinAlgError -> varinf.LinAlgError (a numpy.linalg.LinAlgError).
#pragma once

#include <stdexcept>
#include <string>

namespace varinf {

class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class LinAlgError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace varinf
