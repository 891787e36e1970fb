// Errors thrown by the C++ API. The Python bindings map each to the exception of the same
// family (RuVectorError, InvalidInputError, DimensionMismatchError, InvalidConfigError,
// ComputationError). Messages say what was wrong and how to fix it.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ruvector {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InvalidInput : public Error {
 public:
  using Error::Error;
};

class DimensionMismatch : public InvalidInput {
 public:
  DimensionMismatch(const std::string& message, std::int64_t expected, std::int64_t actual)
      : InvalidInput(message), expected_(expected), actual_(actual) {}
  std::int64_t expected() const noexcept { return expected_; }
  std::int64_t actual() const noexcept { return actual_; }

 private:
  std::int64_t expected_;
  std::int64_t actual_;
};

class InvalidConfig : public Error {
 public:
  using Error::Error;
};

class ComputationError : public Error {
 public:
  using Error::Error;
};

}  // namespace ruvector
