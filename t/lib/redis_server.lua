-- The channels suites' redis-server, from a block: where it is, and killing and restarting it
-- (t/channels/RedisServer.pm started it; the same config and data directory serve again).

local _M = {}

--- Runs the shell command `cmd`; true when it exited 0 (os.execute returns 0 on plain Lua 5.1
-- semantics and true on a LuaJIT built with LUA52COMPAT, as OpenResty's is). With `detached`,
-- the descriptors the worker would pass on (3 and up, nginx's listening sockets among them) are
-- closed first, for a server started from a block.
function _M.sh(cmd, detached)
    if detached then
        cmd = "perl -MPOSIX -e 'POSIX::close($_) for 3 .. 1023; exec @ARGV' " .. cmd
    end
    local rc = os.execute(cmd)
    return rc == 0 or rc == true
end

--- Called from init_by_lua with TEST_NGINX_REDIS_PORT / _DIR / _SERVER.
function _M.init(port, dir, binary)
    _M.port, _M.dir, _M.binary = port, dir, binary
    _M.address = "127.0.0.1:" .. port
    _M.unix = "unix:" .. dir .. "/redis.sock"
end

local function pid()
    local f = io.open(_M.dir .. "/redis.pid")
    if not f then
        return nil
    end
    local p = f:read("*l")
    f:close()
    return tonumber(p)
end

local function listening()
    local sock = ngx.socket.tcp()
    sock:settimeout(200)
    local ok = sock:connect("127.0.0.1", _M.port)
    sock:close()
    return ok ~= nil
end

-- Answers PING (not LOADING its data any more).
local function serving()
    local sock = ngx.socket.tcp()
    sock:settimeout(200)
    local ok = sock:connect("127.0.0.1", _M.port)
    local line
    if ok then
        sock:send("PING\r\n")
        line = sock:receive("*l")
    end
    sock:close()
    return line == "+PONG"
end

--- SIGKILL: the server dies as a crash would; returns once its port is closed.
function _M.kill()
    local p = assert(pid(), "no redis pid")
    os.execute("kill -9 " .. p)
    -- Gone, or a zombie its parent (not us: it daemonized) has not reaped yet.
    for _ = 1, 500 do
        local f = io.open("/proc/" .. p .. "/stat")
        local stat = f and f:read("*l")
        if f then
            f:close()
        end
        -- (Its other threads may hold the socket a moment after the main one is a zombie.)
        if (not stat or stat:match("^%d+ %b() (%a)") == "Z") and not listening() then
            break
        end
        ngx.sleep(0.01)
    end
    os.remove(_M.dir .. "/redis.pid")
    assert(not listening(), "redis still listening after kill")
end

--- Starts the server again on its config (its appendonly file brings the data back).
function _M.start()
    -- Started from a worker, it would inherit nginx's sockets (its listening port among them):
    -- they are closed before redis-server runs.
    assert(_M.sh(_M.binary .. " " .. _M.dir .. "/redis.conf", true), "redis-server failed to start")
    for _ = 1, 500 do
        if serving() then
            return true
        end
        ngx.sleep(0.01)
    end
    error("redis-server did not listen again")
end

return _M
