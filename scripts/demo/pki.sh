#!/usr/bin/env bash
# Demo PKI for the agent listener (mTLS), made with openssl: a CA, a server certificate for
# 127.0.0.1/localhost and an agent certificate whose CN is the agent's ID. Only the benchmark
# harness (bench/src/tools/bulwark-agent.ts) uses it now; scripts/start enrolls its agent with a
# token and the server's own CA.
# Usage: pki.sh DIR   (does nothing if DIR already holds the files)
set -euo pipefail
dir="$1"
[[ -f "$dir/agent.pem" && -f "$dir/server.pem" ]] && exit 0
mkdir -p "$dir"; chmod 700 "$dir"
agent_id="$(cat /proc/sys/kernel/random/uuid)"
key() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "$@" 2>/dev/null; }
key -x509 -days 365 -subj "/CN=Bulwark demo CA" -keyout "$dir/ca.key" -out "$dir/ca.pem"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
printf 'extendedKeyUsage=clientAuth\n' >"$dir/agent.ext"
for pair in "server:bulwark-server" "agent:$agent_id"; do
  name="${pair%%:*}"; cn="${pair#*:}"
  key -subj "/CN=$cn" -keyout "$dir/$name.key" -out "$dir/$name.csr"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 30 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
done
echo "demo PKI in $dir (agent $agent_id)"
