-- The one writer of a connection: a light thread that sends the connection's output queue
-- (src/queue.rs) to its socket, queued bytes and the values held by reference among them, in
-- writes of the size the queue decides.
--
-- Why a thread of its own: a push must go out while the connection's reader is blocked reading
-- (an idle client), and ngx_lua's cosockets are full duplex, so one light thread may write while
-- another reads the same socket (two writers, or two readers, would get "socket busy"). Every
-- byte a connection sends (replies, pushes, pongs, close frames) is queued in order and written
-- here (but for the exception below). The reader (connection.lua) wakes the writer through
-- `io.wake` and, when more than a write's worth is queued, waits on `io.drained` until it is
-- written before reading on, so a client that does not read stalls its own reads instead of
-- growing the queue.
--
-- One exception, for speed: while this thread is idle (nothing taken from the queue and not yet
-- written), a push is written by `send` itself, and a read's replies by the reader, in one
-- non-blocking writev of the queue's front (src/ffi/socket.rs). Writes never overlap, as taken
-- bytes count as in flight until session_written; whatever such a write leaves is this thread's.
-- On such a connection this thread writes the same way first, and uses the cosocket only to wait
-- for a full socket, with a small piece (STALL_PIECE): a connection stalled by its client then
-- holds no copy of a write's worth in a Lua string and in nginx's send buffer beside its queue;
-- and for a value held in Lua, which writev cannot reach (then as flush always has).

local ffi = require("ffi")
local native = require("apisix_pubsub_rs.ffi")
local codec = require("apisix_pubsub_rs.codec")

local C = native.C
local PUSH_SENT, PUSH_HELD = native.push.SENT, native.push.HELD
local ffi_string = ffi.string
local tonumber = tonumber
local concat = table.concat
local ngx = ngx
local release_held = codec.release_held

local _M = {}

-- Writes of pieces up to this size are joined into one string first: ngx_lua walks a table given
-- to send() through the Lua C API, which costs more than copying a few KiB (a small push held by
-- reference is two pieces, its frame header and the message).
local JOIN_MAX = 4096 + 128

-- Scratch space shared by every connection of the worker: each use ends before anything can yield.
local LEN = ffi.new("size_t[2]")
local HELD_ID = ffi.new("int64_t[1]")

--- Sends `due` queued bytes of `conn` (default: all), in writes of at most session_write_size
-- queued bytes plus the held values among them. Returns true, or nil and the socket's error.
function _M.flush(conn, due)
    local sess, held, len, held_id = conn.sess, conn.held, LEN, HELD_ID
    due = due or tonumber(C.session_pending(sess))
    while due > 0 do
        -- A write is one string, or, when held values are among the queued bytes, the pieces in
        -- held.parts (queued bytes are contiguous, so two pieces mean a held value is one).
        local n, size, first, parts = 0, 0, nil, nil
        local max = tonumber(C.session_write_size(sess))
        if max > due then
            max = due
        end
        while size < max do
            local p = C.session_chunk(sess, max - size, len, held_id)
            local k = tonumber(len[0])
            if k == 0 then
                break
            end
            local piece
            if p ~= nil then
                piece = ffi_string(p, k)
            else
                -- A held value is taken whole (what is left of it): it is done with.
                local id = tonumber(held_id[0])
                local v = held[id]
                local offset = tonumber(len[1])
                piece = offset == 0 and v or v:sub(offset + 1)
                release_held(held, id)
            end
            n = n + 1
            if n == 1 then
                first = piece
            else
                if n == 2 then
                    parts = held.parts
                    parts[1] = first
                end
                parts[n] = piece
            end
            -- Taken now, sent below: a failed send ends the connection anyway.
            C.session_consume(sess, k)
            size = size + k
        end
        if n == 0 then
            break
        end
        due = due - size
        local _, err
        if n == 1 then
            _, err = conn.sock:send(first)
        else
            local out = parts
            if size <= JOIN_MAX then
                out = concat(parts, "", 1, n)
            end
            _, err = conn.sock:send(out)
            for i = 1, n do
                parts[i] = nil
            end
        end
        if err then
            return nil, err
        end
        C.session_written(sess, size)
    end
    return true
end

-- How long the writer sleeps at most without being woken (it then checks again).
local IDLE_WAIT = 60

-- What a cosocket send carries when the socket was found full (see the first comment).
local STALL_PIECE = 512

-- Writes what is queued on a connection whose socket is attached (as much as flush would: what
-- is queued now): at once where the socket takes it, and through the cosocket, which waits for
-- the socket, the rest: all of it when a value held in Lua comes soon (writev cannot reach it),
-- else a small piece (the socket is full).
local function write_attached(conn)
    local sess = conn.sess
    local due = tonumber(C.session_pending(sess))
    while due > 0 do
        local before = tonumber(C.session_pending(sess))
        local rc = C.session_write_now(sess)
        if rc == PUSH_SENT then
            return true
        end
        due = due - (before - tonumber(C.session_pending(sess)))
        if due <= 0 then
            return true
        end
        -- A value held in Lua comes next: the cosocket writes it and what is before it, as flush
        -- always has; else the socket is full: a small piece waits for it.
        local piece = rc == PUSH_HELD and due or STALL_PIECE
        if piece > due then
            piece = due
        end
        local ok, err = _M.flush(conn, piece)
        if not ok then
            return nil, err
        end
        due = due - piece
    end
    return true
end

-- Lets a reader waiting in drain() go on.
local function release_reader(io)
    if io.reader_waiting then
        io.reader_waiting = false
        io.drained:post(1)
    end
end

--- The writer thread's body: writes whatever is queued whenever woken, until `io.stop` is set and
-- nothing is left, or a write fails (`io.failed` then holds the socket's error).
function _M.run(conn)
    local io, sess = conn.io, conn.sess
    while true do
        if C.session_pending(sess) > 0 then
            local ok, err
            if io.attached then
                ok, err = write_attached(conn)
            else
                ok, err = _M.flush(conn)
            end
            if not ok then
                io.failed = err
                break
            end
        end
        release_reader(io)
        if C.session_pending(sess) == 0 then
            if io.stop then
                break
            end
            io.wake:wait(IDLE_WAIT)
        end
    end
    release_reader(io)
end

--- Wakes the writer of `conn` (from any Lua context of the worker).
function _M.wake(conn)
    conn.io.wake:post(1)
end

--- Has the writer write everything queued, and waits until it has: the reader's hand-off before
-- it reads on. Returns true, or nil and the socket's error.
function _M.drain(conn)
    local io = conn.io
    if io.failed then
        return nil, io.failed
    end
    if not io.thread then
        -- No writer yet (the loop has not started): nothing to wait for.
        return true
    end
    io.reader_waiting = true
    io.wake:post(1)
    while io.reader_waiting and not io.failed do
        io.drained:wait(IDLE_WAIT)
    end
    if io.failed then
        return nil, io.failed
    end
    return true
end

--- Starts the writer thread of `conn`.
function _M.start(conn)
    conn.io.thread = ngx.thread.spawn(_M.run, conn)
end

--- Stops the writer after it has written everything queued (or failed), and waits for it.
function _M.stop(conn)
    local io = conn.io
    io.stop = true
    if io.thread then
        io.wake:post(1)
        ngx.thread.wait(io.thread)
        io.thread = nil
    end
end

return _M
