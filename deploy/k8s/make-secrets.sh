#!/usr/bin/env bash
# Writes the files the overlays turn into Secrets, into deploy/k8s/secrets/ (or $1), unless they
# exist: a CA and the coordinator's TLS certificate (for lemo-coordinator, its namespace forms and
# localhost), the coordinator's principals file and a worker token. Keep the directory out of git
# (.gitignore does).
#
#   deploy/k8s/make-secrets.sh                       # then: kubectl apply -k deploy/k8s/overlays/dev-single-gpu
#   export LEMO_TOKEN_FILE=deploy/k8s/secrets/client-token LEMO_CA_FILE=deploy/k8s/secrets/ca.crt
#
# Bring your own: put tls.crt, tls.key, ca.crt (PEM) there, and
#   tokens         the coordinator's principals, one "<token> <principal-name> <role>" per line
#                  (role client, worker or admin; docs/security.md). Each client principal is a
#                  tenant that sees only its own jobs; add a line per team, several lines for one
#                  name allow rotation.
#   worker-tokens  bare worker tokens, one per line (the legacy format: every worker shares one
#                  identity, which the coordinator warns about; see docs/security.md), and
#   worker-token   one of worker-tokens, mounted into every worker pod.
# This script writes a client principal "default" (client-token) and an admin (admin-token).
set -euo pipefail
dir=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets}
namespace=${LEMO_NAMESPACE:-lemo}
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077
if [ ! -f tls.crt ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=lemo-ca" \
    -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:3072 -nodes -subj "/CN=lemo-coordinator" \
    -keyout tls.key -out tls.csr 2>/dev/null
  san="DNS:lemo-coordinator,DNS:lemo-coordinator.$namespace,DNS:lemo-coordinator.$namespace.svc"
  san="$san,DNS:lemo-coordinator.$namespace.svc.cluster.local,DNS:localhost,IP:127.0.0.1"
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") \
    -out tls.crt 2>/dev/null
  rm -f tls.csr ca.srl
fi
token() { openssl rand -hex 32; }
[ -f client-token ] || token >client-token
[ -f admin-token ] || token >admin-token
[ -f tokens ] || {
  echo "# <token> <principal-name> <role>: docs/security.md"
  echo "$(cat client-token) default client"
  echo "$(cat admin-token) admin admin"
} >tokens
[ -f worker-token ] || token >worker-token
# The CA as a TLS Secret for cert-manager's CA Issuer (overlays/worker-certificates only).
mkdir -p worker-ca
[ -f worker-ca/tls.crt ] || cp ca.crt worker-ca/tls.crt
if [ ! -f worker-ca/tls.key ] && [ -f ca.key ]; then cp ca.key worker-ca/tls.key; fi
[ -f worker-tokens ] || cp worker-token worker-tokens
echo "secrets in $dir (client token: $dir/client-token, admin token: $dir/admin-token," \
  "CA: $dir/ca.crt)" >&2
