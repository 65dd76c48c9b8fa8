#!/usr/bin/env python3
"""A provider registry on loopback HTTPS for the release acceptance test.

Serves the artifacts that `.ci/release` made in DIR under Terraform's provider
registry protocol (https://developer.hashicorp.com/terraform/internals/provider-registry-protocol):

  /.well-known/terraform.json                               service discovery
  /v1/providers/shardform/NAME/versions                      versions and platforms
  /v1/providers/shardform/NAME/VERSION/download/OS/ARCH      download metadata, SHA256SUMS,
                                                             its signature and the signing key
  /files/FILE                                                the release files themselves

so `terraform init` installs `localhost:PORT/shardform/NAME` as it installs
from registry.terraform.io: checking the zip against SHA256SUMS and
SHA256SUMS against its GPG signature. The files are read on every request, so
a test can tamper with one while the server runs.

It is a test fixture: one version, the platforms it finds, no authentication.

Usage: serve.py --dir DIR --cert CERT.pem --key KEY.pem
Prints `REGISTRY READY https://localhost:PORT` once it listens.
"""
import argparse
import hashlib
import http.server
import json
import os
import re
import ssl
import sys
import threading

ZIP = re.compile(r"^terraform-provider-(?P<name>[a-z0-9]+)_(?P<version>[^_]+)_(?P<os>[a-z0-9]+)_(?P<arch>[a-z0-9]+)\.zip$")


def releases(directory):
    """{name: {version: [(os, arch, filename)]}} from the zips in `directory`."""
    found = {}
    for filename in sorted(os.listdir(directory)):
        match = ZIP.match(filename)
        if match:
            versions = found.setdefault(match["name"], {})
            versions.setdefault(match["version"], []).append((match["os"], match["arch"], filename))
    return found


class Handler(http.server.BaseHTTPRequestHandler):
    directory = "."

    def log_message(self, fmt, *args):
        sys.stderr.write("registry: " + (fmt % args) + "\n")

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        base = f"https://{self.headers['Host']}"
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        found = releases(self.directory)
        if parts == [".well-known", "terraform.json"]:
            return self.reply(200, {"providers.v1": "/v1/providers/"})
        if len(parts) == 5 and parts[:3] == ["v1", "providers", "shardform"] and parts[4] == "versions":
            versions = found.get(parts[3])
            if versions is None:
                return self.reply(404, {"errors": ["Not Found"]})
            return self.reply(200, {"versions": [
                {"version": v, "protocols": ["5.0"], "platforms": [{"os": o, "arch": a} for o, a, _ in files]}
                for v, files in versions.items()
            ]})
        if len(parts) == 8 and parts[:3] == ["v1", "providers", "shardform"] and parts[5] == "download":
            name, version, os_, arch = parts[3], parts[4], parts[6], parts[7]
            files = [f for o, a, f in found.get(name, {}).get(version, []) if (o, a) == (os_, arch)]
            if not files:
                return self.reply(404, {"errors": ["Not Found"]})
            sums = f"terraform-provider-{name}_{version}_SHA256SUMS"
            with open(os.path.join(self.directory, files[0]), "rb") as f:
                shasum = hashlib.sha256(f.read()).hexdigest()
            # The checksum the registry states comes from SHA256SUMS, as a real one's does.
            with open(os.path.join(self.directory, sums)) as f:
                listed = dict(reversed(line.split()) for line in f if line.strip())
            with open(os.path.join(self.directory, "signing-key.asc")) as f:
                armor = f.read()
            return self.reply(200, {
                "protocols": ["5.0"], "os": os_, "arch": arch, "filename": files[0],
                "download_url": f"{base}/files/{files[0]}",
                "shasums_url": f"{base}/files/{sums}",
                "shasums_signature_url": f"{base}/files/{sums}.sig",
                "shasum": listed.get(files[0], shasum),
                "signing_keys": {"gpg_public_keys": [{"key_id": "", "ascii_armor": armor}]},
            })
        if len(parts) == 2 and parts[0] == "files" and "/" not in parts[1] and not parts[1].startswith("."):
            path = os.path.join(self.directory, parts[1])
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    return self.reply(200, f.read(), "application/octet-stream")
        return self.reply(404, {"errors": ["Not Found"]})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    Handler.directory = args.dir
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"REGISTRY READY https://localhost:{server.server_address[1]}", flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
