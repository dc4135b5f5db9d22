#pragma once
// Expected failures as values (STYLE.md): GCC 12 has no std::expected in C++20.
#include <string>
#include <utility>
#include <variant>

namespace prom {

/** An expected failure: a message a person can act on. */
struct Error {
    std::string message;
};

/** Either a value or an Error; the immediate caller decides what to do with the failure. */
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : m_v(std::move(value)) {}
    Result(Error error) : m_v(std::move(error)) {}
    bool ok() const { return m_v.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() { return std::get<0>(m_v); }
    const T& value() const { return std::get<0>(m_v); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() { return value(); }
    const Error& error() const { return std::get<1>(m_v); }

private:
    std::variant<T, Error> m_v;
};

/** Result of an operation that yields nothing but success. */
struct Ok {};

}  // namespace prom
