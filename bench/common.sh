# bench/common.sh — what bench/run.sh and bench/callgrind.sh share; sourced
# by both (after they define `log`).

# install_missing COMMAND:PACKAGES...: installs (apt-get) the packages of
# every command that is not on PATH; a fresh Debian/Ubuntu machine has none.
# PACKAGES may name several, space-separated ("cc:gcc libc6-dev").
install_missing() {
    local missing=() pair
    for pair in "$@"; do
        # shellcheck disable=SC2206 # split the package list on purpose
        command -v "${pair%%:*}" >/dev/null || missing+=(${pair#*:})
    done
    ((${#missing[@]})) || return 0
    local sudo=; [[ $(id -u) == 0 ]] || sudo=sudo
    log "installing ${missing[*]}"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}"
}

# write_backend_conf DIR PORT1 PORT2 WWW: the backend pair's nginx.conf in
# DIR. One nginx process serves both ports ("/" = "hello\n", "/1m" = the file
# WWW/1m); keep-alive is generous so the proxies' pooled connections are
# never closed under them.
write_backend_conf() {
    local dir=$1 be1=$2 be2=$3 www=$4
    cat > "$dir/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    default_type text/plain;
    server {
        listen 127.0.0.1:$be1 backlog=4096;
        listen 127.0.0.1:$be2 backlog=4096;
        root $www;
        location = / { return 200 "hello\n"; }
        location = /1m { default_type application/octet-stream; }
    }
}
CONF
}

# POLICY_ROUTE: the route of the "f-policy" variants (run.sh scenario 14,
# callgrind.sh), issue 18's "route with a rate limit and header rules": a
# limit_req by source that never refuses (the shared-memory table lookup and
# the bucket's update), request header rules (set, add with a fresh
# $request_id, remove) and response header rules (HSTS set, Server removed).
# callgrind.sh's f-limit has limit_req and limit_conn without rules. Single
# quotes: $request_id is forklb's variable, not the shell's.
# shellcheck disable=SC2016
POLICY_ROUTE='{upstream: be, limit_req: {key: source, rate: 1000000/s, burst: 1000000}, request_headers: {set: {X-Env: bench}, add: {X-Request-Id: "$request_id"}, remove: [X-Debug]}, response_headers: {set: {Strict-Transport-Security: "max-age=63072000"}, remove: [Server]}}'
