// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <tl/expected.hpp>

#include <string>
#include <utility>

namespace tessera {

/// An expected failure (bad file, bad input): a message that names what is at fault
/// and what was expected. Context is prepended as the error travels up.
class Error {
public:
  Error() = default;
  explicit Error(std::string message) : m_message(std::move(message)) {}

  const std::string& message() const { return m_message; }

  /// Returns a copy with "context: " in front of the message.
  Error withContext(const std::string& context) const { return Error(context + ": " + m_message); }

private:
  std::string m_message;
};

template <class T>
using Result = tl::expected<T, Error>;

/// Shorthand for returning a failure: `return fail("what went wrong");`
inline tl::unexpected<Error> fail(std::string message) {
  return tl::unexpected<Error>(Error(std::move(message)));
}
inline tl::unexpected<Error> fail(Error error) { return tl::unexpected<Error>(std::move(error)); }

}  // namespace tessera
