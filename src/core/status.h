// Status and Result<T>: the value every expected failure travels as (bad input,
// unknown app, I/O, a backend that is down). One function in server/ maps a
// Status to an HTTP status and a JSON error body. Immutable values; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace nucleon {

enum class StatusCode {
  kOk,
  kInvalidArgument,   // 400
  kUnauthenticated,   // 401
  kForbidden,         // 403 (signed in, but not allowed)
  kNotFound,          // 404
  kMethodNotAllowed,  // 405
  kPayloadTooLarge,   // 413
  kRateLimited,       // 429
  kInternal,          // 500
  kUnavailable,       // 503 (storage not writable, backend down)
  kUnimplemented,     // 501 (this backend does not offer it)
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status Unauthenticated(std::string m) { return {StatusCode::kUnauthenticated, std::move(m)}; }
  static Status Forbidden(std::string m) { return {StatusCode::kForbidden, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status MethodNotAllowed(std::string m) { return {StatusCode::kMethodNotAllowed, std::move(m)}; }
  static Status PayloadTooLarge(std::string m) { return {StatusCode::kPayloadTooLarge, std::move(m)}; }
  static Status RateLimited(std::string m) { return {StatusCode::kRateLimited, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a T or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

#define NUCLEON_RETURN_IF_ERROR(expr)        \
  do {                                       \
    ::nucleon::Status _st = (expr);          \
    if (!_st.ok()) return _st;               \
  } while (0)

}  // namespace nucleon
