-- Writes a connection's output queue to its socket: queued bytes and the values held by
-- reference among them, in writes of the size the queue decides (src/queue.rs).

local ffi = require("ffi")
local native = require("apisix_pubsub_rs.ffi")
local codec = require("apisix_pubsub_rs.codec")

local C = native.C
local ffi_string = ffi.string
local tonumber = tonumber
local release_held = codec.release_held

local _M = {}

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
            _, err = conn.sock:send(parts)
            for i = 1, n do
                parts[i] = nil
            end
        end
        if err then
            return nil, err
        end
    end
    return true
end

return _M
