// StopText: generated tokens -> text to stream, with stop strings. Text that may be the
// start of a stop string is held back until the next token shows whether one completes;
// a completed stop string and everything after it is dropped. Used by generate() and the
// serving engine, so both cut text at the same place.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/tokenizer.h"

namespace kiln {

class StopText {
public:
    StopText(const Tokenizer& tok, std::vector<std::string> stop) : stream_(tok), stop_(std::move(stop)) {}

    // Appends one token's text; true when the text now contains a stop string (cut there).
    bool push(int32_t token) {
        unsent_ += stream_.push(token);
        for (const std::string& s : stop_)
            if (const size_t at = unsent_.find(s); at != std::string::npos) {
                unsent_.resize(at);
                stopped_ = true;
                return true;
            }
        return false;
    }
    // The text that can be sent now; final: all of it (the end of the generation).
    std::string take(bool final) {
        if (final && !stopped_) unsent_ += stream_.flush();
        const size_t keep = final ? 0 : held_back();
        std::string out = unsent_.substr(0, unsent_.size() - keep);
        unsent_.erase(0, out.size());
        return out;
    }

private:
    // Length of the longest suffix of the unsent text that is a proper prefix of a stop string.
    size_t held_back() const {
        const std::string_view text = unsent_;
        size_t hold = 0;
        for (const std::string& s : stop_)
            for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
                if (text.substr(text.size() - n) == std::string_view(s).substr(0, n)) {
                    hold = n;
                    break;
                }
        return hold;
    }
    TokenStreamDecoder stream_;
    std::vector<std::string> stop_;
    std::string unsent_;
    bool stopped_ = false;
};

}  // namespace kiln
