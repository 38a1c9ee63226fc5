-- permessage-deflate for the suites' raw client, through the system's zlib (libz.so.1) by FFI:
-- an implementation of its own, not the module's, to check the module against.

local ffi = require("ffi")

ffi.cdef [[
typedef struct pubsub_test_z_stream {
    const unsigned char *next_in; unsigned int avail_in; unsigned long total_in;
    unsigned char *next_out; unsigned int avail_out; unsigned long total_out;
    const char *msg; void *state; void *zalloc; void *zfree; void *opaque;
    int data_type; unsigned long adler; unsigned long reserved;
} pubsub_test_z_stream;
const char *zlibVersion(void);
int deflateInit2_(pubsub_test_z_stream *s, int level, int method, int windowBits, int memLevel,
                  int strategy, const char *version, int stream_size);
int deflate(pubsub_test_z_stream *s, int flush);
int deflateEnd(pubsub_test_z_stream *s);
int inflateInit2_(pubsub_test_z_stream *s, int windowBits, const char *version, int stream_size);
int inflate(pubsub_test_z_stream *s, int flush);
int inflateEnd(pubsub_test_z_stream *s);
]]

local z = ffi.load("z.so.1")
local SYNC_FLUSH, FINISH, STREAM_END, BUF_ERROR = 2, 4, 1, -5
local TAIL = "\0\0\255\255"
local CHUNK = 65536

local _M = {}

local function pump(s, f, flush, out, chunk)
    chunk = chunk or CHUNK
    local buf = ffi.new("unsigned char[?]", chunk)
    repeat
        s.next_out, s.avail_out = buf, chunk
        local rc = f(s, flush)
        if rc ~= 0 and rc ~= STREAM_END and rc ~= BUF_ERROR then
            return nil, "zlib error " .. rc .. (s.msg ~= nil and (": " .. ffi.string(s.msg)) or "")
        end
        out[#out + 1] = ffi.string(buf, chunk - s.avail_out)
        if rc == STREAM_END then
            break
        end
    until s.avail_out ~= 0
    return true
end

--- A compressor: `:compress(msg [, final])` gives a message's payload (RFC 7692 7.2.1, the tail removed),
--- keeping the window across messages unless `no_context_takeover`.
--- zlib cannot make a raw window of 8 bits: 9 stands for it (a server inflating with 8 would
--- fail on it; the module inflates with 9 or more, as RFC 7692 section 7.1.2.2 allows it to).
function _M.deflater(window_bits, no_context_takeover, level)
    local self = { window_bits = math.max(window_bits or 15, 9), reset = no_context_takeover, level = level or 6 }
    function self.compress(d, msg, final)
        if not d.s or d.reset or final then
            if d.s then z.deflateEnd(d.s) end
            d.s = ffi.new("pubsub_test_z_stream")
            assert(z.deflateInit2_(d.s, d.level, 8, -d.window_bits, 8, 0, z.zlibVersion(),
                ffi.sizeof("pubsub_test_z_stream")) == 0)
        end
        d.s.next_in, d.s.avail_in = msg, #msg
        local out = {}
        assert(pump(d.s, z.deflate, final and FINISH or SYNC_FLUSH, out))
        local payload = table.concat(out)
        if final then
            -- a stream ended by a final block (BFINAL), as RFC 7692 7.2.3.4 allows: no tail to remove
            z.deflateEnd(d.s)
            d.s = nil
            return payload
        end
        assert(payload:sub(-4) == TAIL, "a sync flush ends with the empty stored block")
        return payload:sub(1, -5)
    end
    return self
end

--- An inflater: `:inflate(payload)` gives a message's bytes (the tail appended), or nil, err.
--- zlib refers back into its output buffer as well as its window: a `chunk` smaller than the
--- message (the output buffer's size) makes it hold a sender to the window.
function _M.inflater(window_bits, no_context_takeover, chunk)
    local self = { window_bits = window_bits or 15, reset = no_context_takeover, chunk = chunk }
    function self.inflate(d, payload)
        if not d.s or d.reset then
            if d.s then z.inflateEnd(d.s) end
            d.s = ffi.new("pubsub_test_z_stream")
            assert(z.inflateInit2_(d.s, -d.window_bits, z.zlibVersion(), ffi.sizeof("pubsub_test_z_stream")) == 0)
        end
        local input = payload .. TAIL
        d.s.next_in, d.s.avail_in = input, #input
        local out = {}
        local ok, err = pump(d.s, z.inflate, SYNC_FLUSH, out, d.chunk)
        if not ok then
            return nil, err
        end
        return table.concat(out)
    end
    return self
end

--- `n` MiB of zeros, compressed at level 9 with a sync flush after each MiB (about 1 KiB per
--- MiB: deflate's ratio tops out near 1032:1), the tail removed: a bomb.
function _M.zero_bomb(n)
    local d = _M.deflater(15, false, 9)
    local one = d:compress(string.rep("\0", 1024 * 1024))
    -- Later MiBs compress to the same bytes: matches refer back only to zeros.
    local again = d:compress(string.rep("\0", 1024 * 1024))
    assert(d:compress(string.rep("\0", 1024 * 1024)) == again, "every later MiB compresses alike")
    if n == 1 then
        return one
    end
    return one .. TAIL .. string.rep(again .. TAIL, n - 2) .. again
end

return _M
