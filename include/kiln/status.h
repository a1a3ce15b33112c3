// Status / Expected<T>: how kiln reports errors across its API (no exceptions).
// Untrusted input (files, flags, API arguments) returns a Status naming what is wrong;
// broken internal invariants abort through KILN_ASSERT.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace kiln {

// printf-style formatting into a std::string (g++ 12 has no <format>).
[[gnu::format(printf, 1, 2)]] inline std::string strfmt(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = std::vsnprintf(nullptr, 0, fmt, ap);
    va_end(ap);
    std::string s(n > 0 ? size_t(n) : 0, '\0');
    if (n > 0) std::vsnprintf(s.data(), s.size() + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

class [[nodiscard]] Status {
public:
    Status() = default;  // success
    static Status ok() { return Status(); }
    [[gnu::format(printf, 1, 2)]] static Status error(const char* fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char buf[1024];
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        Status s;
        s.failed_ = true;
        s.message_ = buf;
        return s;
    }
    static Status error_str(std::string message) {
        Status s;
        s.failed_ = true;
        s.message_ = std::move(message);
        return s;
    }
    bool is_ok() const { return !failed_; }
    explicit operator bool() const { return !failed_; }
    const std::string& message() const { return message_; }
    Status status() const { return *this; }  // lets KILN_TRY take a Status or an Expected
    // Returns a copy whose message is prefixed with context ("file.gguf: ...").
    Status with_context(const std::string& context) const {
        if (!failed_) return *this;
        return error_str(context + ": " + message_);
    }

private:
    bool failed_ = false;
    std::string message_;
};

// Either a value or a failed Status.
template <class T>
class [[nodiscard]] Expected {
public:
    Expected(T value) : v_(std::move(value)) {}
    Expected(Status status) : v_(std::move(status)) {
        if (std::get<Status>(v_).is_ok()) v_ = Status::error("internal: Expected built from an ok Status");
    }
    bool is_ok() const { return v_.index() == 0; }
    explicit operator bool() const { return is_ok(); }
    T& value() & { return std::get<T>(v_); }
    T&& value() && { return std::get<T>(std::move(v_)); }
    const T& value() const& { return std::get<T>(v_); }
    T* operator->() { return &std::get<T>(v_); }
    T& operator*() & { return std::get<T>(v_); }
    Status status() const { return is_ok() ? Status::ok() : std::get<Status>(v_); }
    const std::string& message() const {
        static const std::string empty;
        return is_ok() ? empty : std::get<Status>(v_).message();
    }

private:
    std::variant<T, Status> v_;
};

[[noreturn]] inline void assert_fail(const char* file, int line, const char* cond, const std::string& msg) {
    std::fprintf(stderr, "%s:%d: KILN_ASSERT(%s) failed: %s\n", file, line, cond, msg.c_str());
    std::fflush(stderr);
    std::abort();
}

}  // namespace kiln

// Internal invariant: prints file:line and the message, then aborts. Never for untrusted input.
#define KILN_ASSERT(cond, ...)                                                                  \
    do {                                                                                        \
        if (!(cond)) ::kiln::assert_fail(__FILE__, __LINE__, #cond, ::kiln::strfmt(__VA_ARGS__)); \
    } while (0)

// Propagates a failed Status (or Expected) to the caller.
#define KILN_TRY(expr)                                                 \
    do {                                                               \
        auto&& kiln_try_result_ = (expr);                              \
        if (!kiln_try_result_.is_ok()) return kiln_try_result_.status(); \
    } while (0)
