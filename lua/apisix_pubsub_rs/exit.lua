-- What the worker does the moment it starts to exit (quit, reload), for the modules whose I/O
-- would otherwise hold it: an exiting worker stays until its requests and running timers end, and
-- a cosocket blocked on an idle client or in Redis's XREAD BLOCK holds it for its whole timeout.
--
-- ngx_lua runs every timer still pending early (premature) when the worker exits. So one timer
-- per worker, armed far in the future (and again should a year pass), runs every callback
-- registered here at the exit, each in a light thread of its own, as a callback may use
-- cosockets and sleep.

local ngx = ngx
local pairs = pairs

local _M = {}

local FAR = 365 * 86400
local callbacks = {}
local armed = false

local function fire(premature)
    armed = false
    if not premature then
        -- A year without an exit: watch on.
        _M.arm()
        return
    end
    for key, f in pairs(callbacks) do
        ngx.thread.spawn(f, key)
    end
end

--- Arms the worker's exit timer unless it is armed: true, or nil and the timer's error.
function _M.arm()
    if armed then
        return true
    end
    local ok, err = ngx.timer.at(FAR, fire)
    armed = ok and true or false
    return ok, err
end

--- Has `f(key)` run when the worker exits (a key registered again gets the new callback):
-- true, or nil and the error of arming the timer (the worker then exits only once what blocks
-- it ends; registering again retries).
function _M.on_exit(key, f)
    callbacks[key] = f
    return _M.arm()
end

return _M
