#!/bin/sh
# Make a development certificate authority (CA) and a server certificate signed by it.
#
#     sh stages/09/certs/make-dev-certs.sh [FOLDER [HOST_NAME]]
#
# FOLDER defaults to this script's folder, HOST_NAME to localhost. It writes:
#   dev-ca.pem           the CA's certificate: give it to clients (--cafile)
#   HOST_NAME.pem        the server's certificate (--cert), for HOST_NAME
#                        (and for 127.0.0.1 and ::1 when HOST_NAME is localhost)
#   HOST_NAME-key.pem    the server's private key (--key)
#
# FOR LOCAL USE ONLY. The kit publishes the server's private key, so anyone can pose
# as a server that uses it. Never add dev-ca.pem to a browser or to your system's
# trusted CAs. The CA's own key is deleted once it has signed: nobody can sign
# anything else with this CA.
set -eu
out=${1:-$(dirname "$0")}
name=${2:-localhost}
# Ten years: a teaching kit's certificates should not expire in the middle of a course.
days=3650
mkdir -p "$out"
cd "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --8<-- [start:commands]
if [ "$name" = localhost ]; then
  names="DNS:localhost,IP:127.0.0.1,IP:::1"
else
  names="DNS:$name"
fi

# 1. The CA: a new key (elliptic curve P-256: small and fast) and a self-signed
#    certificate that may sign other certificates and nothing else.
cat > "$work/ca.cnf" <<CONFIG
[req]
distinguished_name = dn
x509_extensions = ca
prompt = no
[dn]
CN = chat kit development CA (local use only)
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CONFIG
openssl req -x509 -new -config "$work/ca.cnf" \
  -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$work/ca-key.pem" -out dev-ca.pem -days "$days"

# 2. The server: a new key, and a certificate request with its name.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=$name" -keyout "$name-key.pem" -out "$work/server.csr"

# 3. The CA signs the request. subjectAltName is what clients check the host name
#    against; extendedKeyUsage says the certificate is for a TLS server.
cat > "$work/server.cnf" <<CONFIG
subjectAltName = $names
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CONFIG
openssl x509 -req -in "$work/server.csr" -CA dev-ca.pem -CAkey "$work/ca-key.pem" \
  -set_serial "0x$(openssl rand -hex 16)" -days "$days" \
  -extfile "$work/server.cnf" -out "$name.pem"
# --8<-- [end:commands]

echo "made dev-ca.pem, $name.pem and $name-key.pem in $(pwd): for local use only"
