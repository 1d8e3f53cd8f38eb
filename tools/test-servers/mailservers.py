#!/usr/bin/python3
"""Real mail servers for the Chorus email tests: a private Dovecot and a private Postfix on loopback.

Every server runs from DIR with its own configuration, on free 127.0.0.1 ports; nothing is configured
system-wide. See tools/test-servers/README.md.

    mailservers.py start DIR [--lmtp-relay PORT] [--parent-pid PID] [--queue-lifetime SECONDS] [--oauth]
    mailservers.py stop DIR
    mailservers.py deliver DIR USER FILE [--from ADDR]     raw message into USER's INBOX through Dovecot LMTP
    mailservers.py send DIR --from ADDR FILE RCPT...        raw message to Postfix's MX-style SMTP port
    mailservers.py list DIR USER [MAILBOX]                  the mailbox as JSON: [{uid, flags, raw (base64)}]
    mailservers.py mkmailbox DIR USER NAME                  create (and subscribe) a mailbox
    mailservers.py adduser DIR USER [PASSWORD]              add a user (password "secret" by default)
    mailservers.py logs DIR [LINES]                         the tails of the servers' logs
    mailservers.py kick DIR USER                            disconnect the user's IMAP sessions
    mailservers.py oauth DIR token USER|expire|stats|rotate on|off   the OAuth2 test server (--oauth)

`start` returns once every server accepts connections and writes DIR/servers.json (ports, CA file, users and
passwords, pids). With --parent-pid, a watchdog stops the servers when that process is gone.
"""
import os
import sys

# Debian's python3 has aiosmtpd and the system's OpenSSL; a pyenv python3 earlier on PATH may not.
if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and os.path.exists("/usr/bin/python3") \
        and not os.environ.get("CHORUS_MAILSERVERS_REEXEC"):
    os.environ["CHORUS_MAILSERVERS_REEXEC"] = "1"
    os.execv("/usr/bin/python3", ["/usr/bin/python3", os.path.abspath(__file__)] + sys.argv[1:])

import signal

# Started from a thread that blocks signals (e.g. a Dispatch worker in the tests), this process and every
# daemon it starts would inherit the mask, and Dovecot would then never see SIGTERM: start from a clean one.
signal.pthread_sigmask(signal.SIG_SETMASK, [])

import argparse
import base64
import contextlib
import fcntl
import grp
import imaplib
import json
import pwd
import re
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time

DEFAULT_USERS = ["support@example.test", "customer@example.test", "other@example.test"]
DEFAULT_PASSWORD = "secret"
LOCAL_DOMAIN = "example.test"
RELAY_DOMAIN = "chorus.test"
HOSTNAME = "mail.example.test"
PORT_NAMES = ["imap", "imaps", "lmtp", "auth", "smtp", "submission", "smtps"]
START_TIMEOUT = 30.0


class Failure(Exception):
    """A clear, user-facing error: printed without a traceback, exit status 1."""


# MARK: - Paths and small helpers

class Layout:
    """Where everything lives inside DIR."""

    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        self.servers_json = os.path.join(self.dir, "servers.json")
        self.tls = os.path.join(self.dir, "tls")
        self.ca_key = os.path.join(self.tls, "ca.key")
        self.ca = os.path.join(self.dir, "ca.pem")
        self.cert = os.path.join(self.tls, "server.pem")
        self.key = os.path.join(self.tls, "server.key")
        self.mail = os.path.join(self.dir, "mail")
        self.dovecot = os.path.join(self.dir, "dovecot")
        self.dovecot_conf = os.path.join(self.dovecot, "dovecot.conf")
        self.dovecot_users = os.path.join(self.dovecot, "users")
        self.dovecot_run = os.path.join(self.dir, "run")
        self.dovecot_state = os.path.join(self.dovecot, "state")
        self.dovecot_log = os.path.join(self.dir, "dovecot.log")
        self.postfix = os.path.join(self.dir, "postfix")
        self.postfix_queue = os.path.join(self.dir, "postfix-queue")
        self.postfix_data = os.path.join(self.dir, "postfix-data")
        self.postfix_log = os.path.join(self.dir, "postfix.log")
        self.postfix_mailboxes = os.path.join(self.postfix, "virtual_mailboxes")
        self.postfix_domains = os.path.join(self.postfix, "virtual_domains")
        self.postfix_transport = os.path.join(self.postfix, "transport")
        self.watchdog_log = os.path.join(self.dir, "watchdog.log")
        self.stopping = os.path.join(self.dir, ".stopping")
        self.users_lock = os.path.join(self.dir, ".users.lock")
        self.oauth_state = os.path.join(self.dir, "oauth-state.json")
        self.oauth_log = os.path.join(self.dir, "oauth.log")
        self.dovecot_oauth2 = os.path.join(self.dovecot, "dovecot-oauth2.conf.ext")


def log_tail(path, lines=30):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no %s)" % path
    return "\n".join(text.splitlines()[-lines:])


def logs_text(lay, lines=30):
    out = []
    for path in (lay.dovecot_log, lay.postfix_log) + ((lay.oauth_log,) if os.path.exists(lay.oauth_log) else ()):
        out.append("--- %s ---\n%s" % (path, log_tail(path, lines)))
    return "\n".join(out)


def run(cmd, what, **kw):
    """Runs a command; raises Failure with its output when it fails."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
    if r.returncode != 0:
        raise Failure("%s failed (%s, exit %d):\n%s" % (what, " ".join(cmd), r.returncode,
                                                         r.stdout.decode("utf-8", "replace")))
    return r.stdout.decode("utf-8", "replace")


def mail_owner():
    """The unprivileged uid/gid owning every mailbox (nobody:nogroup unless CHORUS_MAIL_USER names another)."""
    name = os.environ.get("CHORUS_MAIL_USER", "nobody")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise Failure("the mail owner %r does not exist (set CHORUS_MAIL_USER to an existing unprivileged user)" % name)
    return pw.pw_uid, pw.pw_gid


def need_user(name):
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise Failure("the system user %r is missing: install the Debian packages with `make test-deps`" % name)


def need_program(path, package):
    if not os.path.exists(path):
        raise Failure("%s is missing: install %s (`make test-deps`)" % (path, package))


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (all held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def proc_start_time(pid):
    """The start time (clock ticks since boot) of a process, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (OSError, ValueError):
        return None
    return int(data[data.rindex(")") + 2:].split()[19])


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def descendants(root):
    """root and every process below it."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                data = f.read()
            ppid = int(data[data.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited: treat it as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
        return data[data.rindex(")") + 2:].split()[0] != "Z"
    except (OSError, ValueError):
        return False


def terminate_tree(pid, timeout=10.0):
    """SIGTERM a daemon's master (which stops its children); SIGKILL it after `timeout` and whatever of its
    tree is left a second after it exited."""
    if not pid or not alive(pid):
        return
    tree = descendants(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.time() + timeout
    while time.time() < deadline and alive(pid):
        time.sleep(0.02)
    deadline = time.time() + 1.0
    while time.time() < deadline and any(alive(p) for p in tree):
        time.sleep(0.02)
    kill_all([p for p in tree if alive(p)])


def kill_all(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def dovecot_instance(lay):
    """Dovecot names its processes after instance_name, which is unique to DIR."""
    return "dovecot-chorus-%s/" % os.path.basename(lay.dir)


def processes_named(prefix):
    """Processes whose command line starts with prefix."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and proc_cmdline(int(name)).startswith(prefix):
            out.append(int(name))
    return out


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def load_info(lay):
    try:
        with open(lay.servers_json) as f:
            return json.load(f)
    except FileNotFoundError:
        raise Failure("%s does not exist: are the servers of %s started?" % (lay.servers_json, lay.dir))
    except ValueError as e:
        raise Failure("%s is not valid JSON: %s" % (lay.servers_json, e))


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
    os.rename(tmp, path)


def crlf(raw):
    """Bare LF line ends become CRLF (as an MTA sends them), so what IMAP returns is what was sent."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


def read_message(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise Failure("cannot read the message %s: %s" % (path, e))
    if not raw.strip():
        raise Failure("the message %s is empty" % path)
    return crlf(raw)


# MARK: - TLS

def make_tls(lay):
    """A private CA and a server certificate for localhost and 127.0.0.1 signed by it."""
    need_program("/usr/bin/openssl", "openssl")
    os.makedirs(lay.tls, exist_ok=True)
    os.chmod(lay.tls, 0o755)
    ext = os.path.join(lay.tls, "server.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature, keyEncipherment\n"
                "extendedKeyUsage = serverAuth\n"
                "subjectAltName = DNS:localhost, IP:127.0.0.1, DNS:%s\n" % HOSTNAME)
    csr = os.path.join(lay.tls, "server.csr")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "7",
         "-keyout", lay.ca_key, "-out", lay.ca, "-subj", "/O=Chorus tests/CN=Chorus Test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "creating the test CA")
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", lay.key, "-out", csr,
         "-subj", "/O=Chorus tests/CN=localhost"], "creating the server key")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", lay.ca, "-CAkey", lay.ca_key, "-CAcreateserial",
         "-days", "7", "-sha256", "-extfile", ext, "-out", lay.cert], "signing the server certificate")
    os.chmod(lay.key, 0o600)
    os.chmod(lay.ca, 0o644)
    os.chmod(lay.cert, 0o644)


def client_context(lay):
    ctx = ssl.create_default_context(cafile=lay.ca)
    ctx.check_hostname = True
    return ctx


# MARK: - Users

def read_users(lay):
    """{user: password} in file order."""
    users = {}
    try:
        with open(lay.dovecot_users) as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 2 and parts[1].startswith("{PLAIN}"):
                    users[parts[0]] = parts[1][len("{PLAIN}"):]
    except FileNotFoundError:
        pass
    return users


def check_user(user, password):
    if not re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", user or ""):
        raise Failure("bad user %r: want local@domain.tld" % user)
    if user.split("@")[1].lower() == RELAY_DOMAIN:
        raise Failure("%s is the relay domain (mail for it goes to Chorus), not a mailbox domain" % RELAY_DOMAIN)
    if not password or any(c in password for c in ":\n\r\0"):
        raise Failure("bad password for %s: it must be non-empty without ':' or line breaks" % user)


def write_users(lay, users, uid, gid):
    """Dovecot's passwd-file and Postfix's recipient and domain tables, from {user: password}."""
    lines = []
    for user, password in users.items():
        local, domain = user.lower().split("@")
        home = os.path.join(lay.mail, domain, local)
        lines.append("%s:{PLAIN}%s:%d:%d::%s::\n" % (user.lower(), password, uid, gid, home))
    tmp = lay.dovecot_users + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.chmod(tmp, 0o640)
    os.chown(tmp, 0, grp.getgrnam("dovecot").gr_gid)
    os.rename(tmp, lay.dovecot_users)
    domains = sorted({u.lower().split("@")[1] for u in users} | {LOCAL_DOMAIN})
    with open(lay.postfix_mailboxes, "w") as f:
        f.writelines("%s OK\n" % u.lower() for u in users)
    with open(lay.postfix_domains, "w") as f:
        f.writelines("%s OK\n" % d for d in domains)


# MARK: - Dovecot

def dovecot_conf(lay, ports):
    """The private Dovecot's configuration; with an "oauth" port, XOAUTH2 and OAUTHBEARER are checked by an oauth2
    passdb asking the test token server, next to the passwd-file passdb that keeps PLAIN and LOGIN."""
    oauth = "oauth" in ports
    return """# Generated by tools/test-servers/mailservers.py: a private Dovecot for the Chorus tests.
base_dir = {run}
state_dir = {state}
instance_name = chorus-{name}
log_path = {log}
info_log_path = {log}
auth_verbose = yes
auth_failure_delay = 0
hostname = {hostname}
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = {mechanisms}
mail_location = maildir:~/Maildir
mail_fsync = never
first_valid_uid = 1
first_valid_gid = 1
mail_max_userip_connections = 200
lmtp_save_to_detail_mailbox = no
recipient_delimiter = +

namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
}}

passdb {{
  driver = passwd-file
{passwd_mechanisms}  args = scheme=PLAIN username_format=%Lu {users}
}}
{oauth_passdb}{anvil}userdb {{
  driver = passwd-file
  args = username_format=%Lu {users}
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service auth {{
  inet_listener auth {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{domain}
}}
""".format(run=lay.dovecot_run, state=lay.dovecot_state, name=os.path.basename(lay.dir), log=lay.dovecot_log,
           hostname=HOSTNAME, cert=lay.cert, key=lay.key, users=lay.dovecot_users, domain=LOCAL_DOMAIN,
           mechanisms="plain login xoauth2 oauthbearer" if oauth else "plain login",
           passwd_mechanisms="  mechanisms = plain login\n" if oauth else "",
           # The OAuth2 tests refuse tokens on purpose; without this, anvil's auth penalty would delay every later
           # login from 127.0.0.1 by 2 to 15 s.
           anvil="service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n" if oauth else "",
           oauth_passdb=("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = %s\n}\n"
                         % lay.dovecot_oauth2) if oauth else "",
           **{k: v for k, v in ports.items() if k != "oauth"})


def start_dovecot(lay, ports):
    need_program("/usr/sbin/dovecot", "dovecot-imapd and dovecot-lmtpd")
    need_program("/usr/lib/dovecot/lmtp", "dovecot-lmtpd")
    need_user("dovecot")
    need_user("dovenull")
    os.makedirs(lay.dovecot_state, exist_ok=True)
    with open(lay.dovecot_conf, "w") as f:
        f.write(dovecot_conf(lay, ports))
    if "oauth" in ports:
        with open(lay.dovecot_oauth2, "w") as f:
            f.write(dovecot_oauth2_conf(ports["oauth"]))
        os.chmod(lay.dovecot_oauth2, 0o640)
        os.chown(lay.dovecot_oauth2, 0, grp.getgrnam("dovecot").gr_gid)
    if len(lay.dovecot_run) > 70:
        raise Failure("the directory %s is too long for Dovecot's unix sockets (keep it under 60 characters)" % lay.dir)
    out = os.path.join(lay.dovecot, "start.out")
    with open(out, "wb") as f:
        r = subprocess.run(["/usr/sbin/dovecot", "-c", lay.dovecot_conf], stdin=subprocess.DEVNULL, stdout=f, stderr=f)
    if r.returncode != 0:
        raise Failure("dovecot did not start (exit %d):\n%s\n--- dovecot.log ---\n%s"
                      % (r.returncode, log_tail(out), log_tail(lay.dovecot_log)))
    pid = None
    deadline = time.time() + 10
    while time.time() < deadline:
        pid = read_pid(os.path.join(lay.dovecot_run, "master.pid"))
        if pid and alive(pid):
            break
        time.sleep(0.02)
    if not pid:
        raise Failure("dovecot started but wrote no %s/master.pid:\n%s" % (lay.dovecot_run, log_tail(lay.dovecot_log)))
    return pid


# MARK: - Postfix

def postfix_main_cf(lay, ports, relay, lifetime):
    relay_lines = ""
    if relay:
        relay_lines = "relay_domains = %s\n" % RELAY_DOMAIN
    else:
        relay_lines = "relay_domains =\n"
    return """# Generated by tools/test-servers/mailservers.py: a private Postfix for the Chorus tests.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {log}
maillog_file_prefixes = {dir}
myhostname = {hostname}
mydomain = {domain}
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP Postfix (Chorus tests)
biff = no
append_dot_mydomain = no

# No local delivery: every mailbox lives in Dovecot.
local_transport = error:5.1.1 local delivery is disabled here
local_recipient_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = texthash:{domains}
virtual_mailbox_maps = texthash:{mailboxes}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
{relay_lines}transport_maps = texthash:{transport}
default_transport = error:5.4.4 the Chorus test mail servers deliver nowhere outside their own domains
relay_transport = error:5.4.4 no relay transport configured
recipient_delimiter = +
message_size_limit = 52428800

# TLS with the private CA's certificate; SASL through Dovecot's auth listener.
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtp_tls_security_level = none
lmtp_tls_security_level = none
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth}
smtpd_sasl_auth_enable = no
smtpd_sasl_authenticated_header = yes
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0s
in_flow_delay = 0s

# Fast queue for tests: a deferred delivery is retried within seconds.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = {lifetime}s
bounce_queue_lifetime = {lifetime}s
delay_warning_time = 0h
smtp_connect_timeout = 5s
lmtp_connect_timeout = 5s
lmtp_host_lookup = native
smtp_host_lookup = native
""".format(queue=lay.postfix_queue, data=lay.postfix_data, log=lay.postfix_log, dir=lay.dir, hostname=HOSTNAME,
           domain=LOCAL_DOMAIN, domains=lay.postfix_domains, mailboxes=lay.postfix_mailboxes,
           transport=lay.postfix_transport, relay_lines=relay_lines, cert=lay.cert, key=lay.key,
           lifetime=lifetime, **ports)


def postfix_master_cf(ports):
    submission_opts = """  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=reject_unlisted_recipient,permit
"""
    return """# Generated by tools/test-servers/mailservers.py. No chroot: the queue lives in the test directory.
# service type  private unpriv  chroot  wakeup  maxproc command + args
# MX-style inbound: no AUTH; accepts example.test (unknown users are bounced by Dovecot's LMTP) and chorus.test.
127.0.0.1:{smtp} inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/smtp-in
  -o smtpd_reject_unlisted_recipient=no
# Submission: STARTTLS required, then AUTH; unknown example.test users are refused at RCPT.
127.0.0.1:{submission} inet n    -       n       -       -       smtpd
  -o syslog_name=postfix/submission
{submission_opts}# Submission over implicit TLS.
127.0.0.1:{smtps} inet n         -       n       -       -       smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
{submission_opts}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""".format(submission_opts=submission_opts, **ports)


def write_postfix_transport(lay, relay):
    with open(lay.postfix_transport, "w") as f:
        if relay:
            f.write("%s lmtp:inet:127.0.0.1:%d\n" % (RELAY_DOMAIN, relay))


def backdate_postfix_files(lay):
    """Postfix waits (in 300 ms steps) until a config or table file is older than the current second, to avoid
    reading half-written files; ours are complete when written, so they are dated a few seconds back."""
    past = time.time() - 5
    for name in os.listdir(lay.postfix):
        path = os.path.join(lay.postfix, name)
        if os.path.isfile(path):
            os.utime(path, (past, past))


def prepare_postfix_queue(lay):
    """Creates the queue and data directories as the package's postfix-files specifies, then asks `postfix start`
    to skip its (slow, first-run) integrity check with the quick-start file. Without postfix-files, `postfix start`
    creates them itself."""
    spec = "/etc/postfix/postfix-files"
    if not os.path.exists(spec):
        return
    names = {"$queue_directory": lay.postfix_queue, "$data_directory": lay.postfix_data}
    owners = {"$mail_owner": "postfix", "root": "root", "-": None}
    groups = {"$setgid_group": "postdrop", "-": None}
    with open(spec) as f:
        for line in f:
            fields = line.strip().split(":")
            if len(fields) < 5 or fields[1] != "d":
                continue
            top = fields[0].split("/")[0]
            if top not in names:
                continue
            path = names[top] + fields[0][len(top):]
            if fields[2] not in owners or fields[3] not in groups:
                return  # an unknown spec: let `postfix start` do it all
            os.makedirs(path, exist_ok=True)
            uid = pwd.getpwnam(owners[fields[2]]).pw_uid if owners[fields[2]] else -1
            gid = grp.getgrnam(groups[fields[3]]).gr_gid if groups[fields[3]] else -1
            os.chown(path, uid, gid)
            os.chmod(path, int(fields[4], 8))
    open(os.path.join(lay.postfix_queue, "quick-start"), "w").close()


def start_postfix(lay, ports, relay, lifetime):
    need_program("/usr/sbin/postfix", "postfix")
    need_user("postfix")
    try:
        grp.getgrnam("postdrop")
    except KeyError:
        raise Failure("the group 'postdrop' is missing: install postfix (`make test-deps`)")
    for d in (lay.postfix, lay.postfix_queue):
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
    os.makedirs(lay.postfix_data, exist_ok=True)
    pf = pwd.getpwnam("postfix")
    os.chown(lay.postfix_data, pf.pw_uid, pf.pw_gid)
    with open(os.path.join(lay.postfix, "main.cf"), "w") as f:
        f.write(postfix_main_cf(lay, ports, relay, lifetime))
    with open(os.path.join(lay.postfix, "master.cf"), "w") as f:
        f.write(postfix_master_cf(ports))
    write_postfix_transport(lay, relay)
    backdate_postfix_files(lay)
    prepare_postfix_queue(lay)
    # Postfix's postlogd creates the log; make it exist so a failure's tail is readable.
    open(lay.postfix_log, "a").close()
    out = os.path.join(lay.postfix, "start.out")
    env = dict(os.environ)
    env.pop("MAIL_CONFIG", None)
    with open(out, "wb") as f:
        r = subprocess.run(["/usr/sbin/postfix", "-c", lay.postfix, "start"], stdin=subprocess.DEVNULL,
                           stdout=f, stderr=f, env=env)
    if r.returncode != 0:
        raise Failure("postfix did not start (exit %d):\n%s\n--- postfix.log ---\n%s"
                      % (r.returncode, log_tail(out), log_tail(lay.postfix_log)))
    pid = None
    deadline = time.time() + 10
    while time.time() < deadline:
        pid = read_pid(os.path.join(lay.postfix_queue, "pid", "master.pid"))
        if pid and alive(pid):
            break
        time.sleep(0.05)
    if not pid:
        raise Failure("postfix started but its master wrote no pid:\n%s\n%s" % (log_tail(out), log_tail(lay.postfix_log)))
    return pid


def postfix_reload(lay):
    run(["/usr/sbin/postfix", "-c", lay.postfix, "reload"], "postfix reload")


# MARK: - Readiness

def expect_greeting(port, prefix, ctx=None, timeout=1.0):
    """Connects (with TLS when ctx is given) and reads a greeting line starting with prefix."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        data = b""
        while b"\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        line = data.split(b"\n")[0].decode("utf-8", "replace").strip()
        if not line.startswith(prefix):
            raise OSError("port %d greeted with %r, expected %r" % (port, line, prefix))
    finally:
        s.close()


def wait_ready(lay, ports, pids, deadline):
    ctx = client_context(lay)
    checks = [("imap", "* OK", None), ("imaps", "* OK", ctx), ("lmtp", "220", None), ("auth", "VERSION", None),
              ("smtp", "220", None), ("submission", "220", None), ("smtps", "220", ctx)]
    pending = list(checks)
    last = {}
    while pending:
        for name, prefix, c in list(pending):
            try:
                expect_greeting(ports[name], prefix, c)
                pending.remove((name, prefix, c))
            except (OSError, ssl.SSLError) as e:
                last[name] = str(e)
        for daemon, pid in pids.items():
            if not alive(pid):
                raise Failure("%s (pid %d) exited during start-up\n%s" % (daemon, pid, logs_text(lay)))
        if not pending:
            break
        if time.time() > deadline:
            raise Failure("not accepting connections after %.0f s: %s\n%s" % (
                START_TIMEOUT, ", ".join("%s (port %d): %s" % (n, ports[n], last.get(n, "?")) for n, _, _ in pending),
                logs_text(lay)))
        time.sleep(0.1)
    # End to end: AUTH on submission goes through Postfix's SASL client to Dovecot's auth listener.
    user, password = next(iter(read_users(lay).items()))
    try:
        with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=10) as s:
            s.starttls(context=ctx)
            s.login(user, password)
    except (OSError, smtplib.SMTPException) as e:
        raise Failure("submission AUTH through Dovecot does not work: %s\n%s" % (e, logs_text(lay)))


# MARK: - OAuth2 (--oauth)
#
# A tiny OAuth2 authorization server for the XOAUTH2 tests: a token endpoint (RFC 6749 §6, the refresh_token grant)
# and a token introspection endpoint (RFC 7662) that Dovecot's oauth2 passdb asks (introspection_mode = post). Access
# tokens are random strings kept in memory with an expiry; the admin calls expire them all, mint one for a user,
# turn refresh-token rotation on or off, and count the requests.

OAUTH_CLIENT_ID = "chorus-test-client"


def oauth_url(info, path):
    port = (info.get("ports") or {}).get("oauth")
    if not port:
        raise Failure("the servers of %s run without --oauth" % info.get("directory", "?"))
    return "http://127.0.0.1:%d%s" % (port, path)


def write_oauth_state(lay, users, lifetime):
    """The client, its secret and one refresh token per user, read by the token server when it starts."""
    import secrets
    state = {
        "client_id": OAUTH_CLIENT_ID,
        "client_secret": "cs-" + secrets.token_urlsafe(18),
        "refresh_tokens": {u: "rt-" + secrets.token_urlsafe(24) for u in users},
        "token_lifetime": lifetime,
    }
    write_json(lay.oauth_state, state)
    os.chmod(lay.oauth_state, 0o600)
    return state


def dovecot_oauth2_conf(port):
    """Dovecot 2.3's oauth2 passdb (doc.dovecot.org/2.3 configuration_manual/authentication/oauth2): the token is POSTed
    as token=… to the introspection URL; the answer's `username` must be the user logging in and `active` true."""
    return """# Generated by tools/test-servers/mailservers.py --oauth.
introspection_mode = post
introspection_url = http://127.0.0.1:%d/introspect
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
""" % port


def start_oauth_server(lay, port):
    log = open(lay.oauth_log, "ab")
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "oauth-server", lay.dir, "--port", str(port)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
    log.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        if p.poll() is not None:
            raise Failure("the OAuth2 server exited at start (%s):\n%s" % (p.returncode, log_tail(lay.oauth_log)))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return p.pid
        except OSError:
            time.sleep(0.05)
    raise Failure("the OAuth2 server does not accept connections on %d:\n%s" % (port, log_tail(lay.oauth_log)))


def oauth_call(info, path, fields=None, method="POST"):
    """A call to the token server; returns (status, JSON answer)."""
    import urllib.error
    import urllib.parse
    import urllib.request
    data = urllib.parse.urlencode(fields or {}).encode() if method == "POST" else None
    req = urllib.request.Request(oauth_url(info, path), data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError as e:
        raise Failure("cannot reach the OAuth2 server at %s: %s" % (oauth_url(info, path), e))


def xoauth2_string(user, token):
    return "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)


def check_oauth(lay, info, ctx):
    """End to end: a minted token logs in over IMAP (AUTHENTICATE XOAUTH2) and over submission (AUTH XOAUTH2, which
    Postfix checks through Dovecot); then every token is expired and the counters reset."""
    user = next(iter(read_users(lay)))
    status, answer = oauth_call(info, "/admin/issue", {"user": user})
    if status != 200:
        raise Failure("the OAuth2 server did not issue a token: %d %s" % (status, answer))
    token = answer["access_token"]
    try:
        c = imaplib.IMAP4_SSL("127.0.0.1", info["ports"]["imaps"], ssl_context=ctx, timeout=10)
        try:
            c.authenticate("XOAUTH2", lambda _: xoauth2_string(user, token).encode())
        finally:
            try:
                c.logout()
            except Exception:
                pass
    except (OSError, imaplib.IMAP4.error) as e:
        raise Failure("IMAP AUTHENTICATE XOAUTH2 with Dovecot does not work: %s\n%s\n%s"
                      % (e, logs_text(lay), log_tail(lay.oauth_log)))
    try:
        with smtplib.SMTP("127.0.0.1", info["ports"]["submission"], timeout=10) as s:
            s.starttls(context=ctx)
            s.ehlo()
            if "XOAUTH2" not in s.esmtp_features.get("auth", "").upper().split():
                raise Failure("Postfix submission does not offer AUTH XOAUTH2 (offers %r)" % s.esmtp_features.get("auth"))
            s.auth("XOAUTH2", lambda challenge=None: xoauth2_string(user, token) if challenge is None else "")
    except (OSError, smtplib.SMTPException) as e:
        raise Failure("submission AUTH XOAUTH2 through Dovecot does not work: %s\n%s" % (e, logs_text(lay)))
    oauth_call(info, "/admin/reset")


class OAuthState:
    """The token server's memory: clients, refresh tokens, access tokens and counters (one lock)."""

    def __init__(self, config):
        import threading
        self.lock = threading.Lock()
        self.client_id = config["client_id"]
        self.client_secret = config["client_secret"]
        self.lifetime = int(config.get("token_lifetime") or 3600)
        self.refresh = {token: user for user, token in config["refresh_tokens"].items()}
        self.access = {}          # token -> (user, expires_at)
        self.rotate = False
        self.reset_counters()

    def reset_counters(self):
        self.counters = {"token_requests": 0, "tokens_issued": 0, "token_errors": 0, "introspections": 0,
                         "introspections_active": 0, "refresh_tokens_rotated": 0}

    def issue(self, user):
        import secrets
        token = "at-" + secrets.token_urlsafe(24)
        self.access[token] = (user, time.time() + self.lifetime)
        self.counters["tokens_issued"] += 1
        return token


def oauth_handler(state):
    from http.server import BaseHTTPRequestHandler
    import secrets
    import urllib.parse

    class Handler(BaseHTTPRequestHandler):
        server_version = "ChorusTestOAuth/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # one line per request, without bodies (they hold secrets)
            sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

        def answer(self, status, body, headers=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def form(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            return {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}

        def do_GET(self):
            if self.path == "/admin/stats":
                with state.lock:
                    now = time.time()
                    body = dict(state.counters, active_tokens=sum(1 for _, e in state.access.values() if e > now),
                                rotate=state.rotate)
                return self.answer(200, body)
            self.answer(404, {"error": "not_found"})

        def do_POST(self):
            f = self.form()
            if self.path == "/token":
                return self.token(f)
            if self.path == "/introspect":
                with state.lock:
                    state.counters["introspections"] += 1
                    entry = state.access.get(f.get("token", ""))
                    if entry is None or entry[1] <= time.time():
                        return self.answer(200, {"active": False})
                    state.counters["introspections_active"] += 1
                    return self.answer(200, {"active": True, "username": entry[0], "client_id": state.client_id,
                                             "scope": "mail", "token_type": "Bearer", "exp": int(entry[1])})
            with state.lock:
                if self.path == "/admin/expire":
                    n = 0
                    for token, (user, expires) in list(state.access.items()):
                        if expires > time.time():
                            n += 1
                        state.access[token] = (user, 0)
                    return self.answer(200, {"expired": n})
                if self.path == "/admin/issue":
                    user = f.get("user", "").lower()
                    if not user:
                        return self.answer(400, {"error": "invalid_request", "error_description": "user missing"})
                    return self.answer(200, {"access_token": state.issue(user), "expires_in": state.lifetime})
                if self.path == "/admin/rotate":
                    state.rotate = f.get("on") in ("1", "true", "yes")
                    return self.answer(200, {"rotate": state.rotate})
                if self.path == "/admin/reset":
                    state.access.clear()
                    state.reset_counters()
                    return self.answer(200, {})
            self.answer(404, {"error": "not_found"})

        def token(self, f):
            with state.lock:
                state.counters["token_requests"] += 1
                client_id, client_secret = f.get("client_id"), f.get("client_secret")
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    try:
                        client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
                        client_id, client_secret = urllib.parse.unquote(client_id), urllib.parse.unquote(client_secret)
                    except ValueError:
                        client_id = None

                def error(status, code, description):
                    state.counters["token_errors"] += 1
                    headers = [("WWW-Authenticate", "Basic")] if status == 401 else []
                    return self.answer(status, {"error": code, "error_description": description}, headers)

                if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/x-www-form-urlencoded":
                    return error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
                if client_id != state.client_id or client_secret != state.client_secret:
                    return error(401, "invalid_client", "client authentication failed")
                if f.get("grant_type") != "refresh_token":
                    return error(400, "unsupported_grant_type", "only the refresh_token grant is supported")
                user = state.refresh.get(f.get("refresh_token", ""))
                if user is None:
                    return error(400, "invalid_grant", "the refresh token is invalid, expired or revoked")
                body = {"access_token": state.issue(user), "token_type": "Bearer", "expires_in": state.lifetime,
                        "scope": f.get("scope") or "https://mail.google.com/"}
                if state.rotate:
                    new = "rt-" + secrets.token_urlsafe(24)
                    del state.refresh[f["refresh_token"]]
                    state.refresh[new] = user
                    state.counters["refresh_tokens_rotated"] += 1
                    body["refresh_token"] = new
                return self.answer(200, body)

    return Handler


def cmd_oauth_server(args):
    """Internal: the token server started by `start --oauth` (runs until stopped)."""
    from http.server import ThreadingHTTPServer
    lay = Layout(args.dir)
    with open(lay.oauth_state) as f:
        state = OAuthState(json.load(f))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), oauth_handler(state))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("%s: OAuth2 test server on 127.0.0.1:%d" % (time.ctime(), args.port), flush=True)
    server.serve_forever()
    return 0


def cmd_oauth(args):
    """The admin calls of the token server: token USER, expire, stats, rotate on|off."""
    info = load_info(Layout(args.dir))
    if args.action == "token":
        if not args.value:
            raise Failure("oauth token needs a user")
        status, answer = oauth_call(info, "/admin/issue", {"user": args.value})
        if status != 200:
            raise Failure("the OAuth2 server refused to issue a token: %d %s" % (status, answer))
        print(answer["access_token"])
        return 0
    if args.action == "expire":
        status, answer = oauth_call(info, "/admin/expire")
    elif args.action == "stats":
        status, answer = oauth_call(info, "/admin/stats", method="GET")
    else:
        if args.value not in ("on", "off"):
            raise Failure("oauth rotate needs on or off")
        status, answer = oauth_call(info, "/admin/rotate", {"on": "1" if args.value == "on" else "0"})
    if status != 200:
        raise Failure("the OAuth2 server answered %d %s" % (status, answer))
    print(json.dumps(answer, sort_keys=True))
    return 0


# MARK: - Watchdog

def spawn_watchdog(lay, parent):
    start_time = proc_start_time(parent)
    if start_time is None:
        raise Failure("--parent-pid %d: no such process" % parent)
    log = open(lay.watchdog_log, "ab")
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "watchdog", lay.dir,
                          "--parent-pid", str(parent), "--parent-start", str(start_time)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
    log.close()
    return p.pid


def cmd_watchdog(args):
    """Stops the servers when the parent process is gone (or was replaced by another with the same pid)."""
    lay = Layout(args.dir)
    while True:
        if os.path.exists(lay.stopping) or not os.path.exists(lay.dir):
            return 0
        if proc_start_time(args.parent_pid) != args.parent_start:
            print("%s: parent %d is gone; stopping the servers of %s" % (time.ctime(), args.parent_pid, lay.dir),
                  flush=True)
            stop_servers(lay, from_watchdog=True)
            return 0
        time.sleep(1)


# MARK: - Commands

def cmd_start(args):
    if os.geteuid() != 0:
        raise Failure("start must run as root: Dovecot and Postfix switch to their own users")
    lay = Layout(args.dir)
    if args.parent_pid and proc_start_time(args.parent_pid) is None:
        raise Failure("--parent-pid %d: no such process" % args.parent_pid)
    os.makedirs(lay.dir, exist_ok=True)
    if os.path.exists(lay.servers_json):
        info = json.load(open(lay.servers_json))
        if any(alive(p) for k, p in info.get("pids", {}).items() if k != "watchdog" and p):
            raise Failure("servers are already running from %s (stop them first)" % lay.dir)
    if os.path.exists(lay.stopping):
        os.unlink(lay.stopping)
    # Dovecot (as the mail owner) and Postfix (as postfix) must reach their files under DIR.
    os.chmod(lay.dir, 0o755)
    uid, gid = mail_owner()
    os.makedirs(lay.mail, exist_ok=True)
    os.chown(lay.mail, uid, gid)
    os.chmod(lay.mail, 0o700)
    os.makedirs(lay.dovecot, exist_ok=True)
    os.makedirs(lay.postfix, exist_ok=True)
    make_tls(lay)
    users = read_users(lay) or {u: DEFAULT_PASSWORD for u in DEFAULT_USERS}
    write_users(lay, users, uid, gid)
    if args.oauth:
        write_oauth_state(lay, users, args.oauth_token_lifetime)

    # A port picked free can be taken by another program before the server binds it: then try new ones.
    for attempt in range(1, 4):
        try:
            info = launch(lay, args)
            break
        except Failure as e:
            if "Address already in use" not in str(e) or attempt == 3:
                raise
            if os.path.exists(lay.stopping):
                os.unlink(lay.stopping)
    print(json.dumps(info, indent=2, sort_keys=True))
    return 0


def launch(lay, args):
    """One attempt at starting the servers on fresh ports; on failure, stops what it started."""
    pids = {}
    info = {}
    try:
        # Ports are picked and bound under one lock, so server sets started in parallel never pick the same one.
        lock_path = os.path.join(tempfile.gettempdir(), "chorus-mailservers.lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            deadline = time.time() + START_TIMEOUT
            names = PORT_NAMES + (["oauth"] if args.oauth else [])
            ports = dict(zip(names, free_ports(len(names))))
            if args.oauth:
                pids["oauth"] = start_oauth_server(lay, ports["oauth"])
            pids["dovecot"] = start_dovecot(lay, ports)
            pids["postfix"] = start_postfix(lay, ports, args.lmtp_relay, args.queue_lifetime)
            info = {
                "directory": lay.dir,
                "hostname": "localhost",
                "ports": ports,
                "ca_file": lay.ca,
                "cert_file": lay.cert,
                "users": read_users(lay),
                "password": DEFAULT_PASSWORD,
                "domains": {"local": LOCAL_DOMAIN, "relay": RELAY_DOMAIN},
                "lmtp_relay": args.lmtp_relay,
                "mta": "postfix",
                "pids": pids,
                "parent_pid": args.parent_pid,
                "logs": {"dovecot": lay.dovecot_log, "postfix": lay.postfix_log},
                "configs": {"dovecot": lay.dovecot_conf, "postfix": lay.postfix},
            }
            if args.oauth:
                with open(lay.oauth_state) as f:
                    state = json.load(f)
                info["oauth"] = {
                    "token_url": "http://127.0.0.1:%d/token" % ports["oauth"],
                    "introspection_url": "http://127.0.0.1:%d/introspect" % ports["oauth"],
                    "client_id": state["client_id"], "client_secret": state["client_secret"],
                    "refresh_tokens": state["refresh_tokens"], "token_lifetime": state["token_lifetime"],
                }
                info["logs"]["oauth"] = lay.oauth_log
            write_json(lay.servers_json, info)
            wait_ready(lay, ports, dict(pids), deadline)
            if args.oauth:
                check_oauth(lay, info, client_context(lay))
        if args.parent_pid:
            pids["watchdog"] = spawn_watchdog(lay, args.parent_pid)
            write_json(lay.servers_json, info)
    except BaseException:
        if not info:
            write_json(lay.servers_json, {"directory": lay.dir, "pids": pids})
        stop_servers(lay)
        raise
    return info


def stop_servers(lay, from_watchdog=False):
    """Stops whatever runs from lay.dir (idempotent)."""
    if not os.path.isdir(lay.dir):
        return
    open(lay.stopping, "a").close()
    pids = {}
    try:
        with open(lay.servers_json) as f:
            pids = json.load(f).get("pids", {})
    except (OSError, ValueError):
        pass
    watchdog = pids.get("watchdog")
    if watchdog and not from_watchdog and alive(watchdog) and "mailservers.py watchdog" in proc_cmdline(watchdog):
        try:
            os.kill(watchdog, signal.SIGTERM)
        except ProcessLookupError:
            pass
    # The pid files are the truth when servers.json was not written (start failed half-way).
    postfix = read_pid(os.path.join(lay.postfix_queue, "pid", "master.pid")) or pids.get("postfix")
    dovecot = read_pid(os.path.join(lay.dovecot_run, "master.pid")) or pids.get("dovecot")
    if postfix and "master" in proc_cmdline(postfix):
        terminate_tree(postfix)
    if dovecot and "dovecot" in proc_cmdline(dovecot):
        terminate_tree(dovecot)
    oauth = pids.get("oauth")
    if oauth and "mailservers.py oauth-server" in proc_cmdline(oauth):
        terminate_tree(oauth, timeout=5)
    # Children of a master that died on its own (e.g. killed with -9) are orphans: find them by instance name.
    kill_all([p for p in processes_named(dovecot_instance(lay)) if alive(p)])


def cmd_stop(args):
    stop_servers(Layout(args.dir))
    return 0


def cmd_deliver(args):
    lay = Layout(args.dir)
    info = load_info(lay)
    raw = read_message(args.file)
    try:
        with smtplib.LMTP("127.0.0.1", info["ports"]["lmtp"]) as c:
            c.sendmail(args.sender, [args.user], raw)
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients[args.user]
        raise Failure("Dovecot LMTP refused %s: %d %s" % (args.user, code, text.decode("utf-8", "replace")))
    except smtplib.SMTPResponseException as e:
        raise Failure("Dovecot LMTP refused the message for %s: %d %s"
                      % (args.user, e.smtp_code, e.smtp_error.decode("utf-8", "replace")))
    except OSError as e:
        raise Failure("cannot reach Dovecot LMTP on port %d: %s" % (info["ports"]["lmtp"], e))
    return 0


def cmd_send(args):
    lay = Layout(args.dir)
    info = load_info(lay)
    raw = read_message(args.file)
    port = info["ports"]["smtp"]
    try:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="mx.sender.test", timeout=30) as c:
            refused = c.sendmail(args.sender, args.recipients, raw)
    except smtplib.SMTPRecipientsRefused as e:
        raise Failure("Postfix refused every recipient: %s" % format_refusals(e.recipients))
    except smtplib.SMTPResponseException as e:
        raise Failure("Postfix refused the message: %d %s" % (e.smtp_code, e.smtp_error.decode("utf-8", "replace")))
    except smtplib.SMTPException as e:
        raise Failure("SMTP to Postfix failed: %s" % e)
    except OSError as e:
        raise Failure("cannot reach Postfix on port %d: %s" % (port, e))
    if refused:
        raise Failure("Postfix accepted the message but refused some recipients: %s" % format_refusals(refused))
    return 0


def format_refusals(recipients):
    return "; ".join("%s: %d %s" % (r, code, text.decode("utf-8", "replace")) for r, (code, text) in recipients.items())


def imap_quote(name):
    """A mailbox name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3)."""
    out, buf = [], []

    def flush():
        if buf:
            b64 = base64.b64encode("".join(buf).encode("utf-16-be")).decode().rstrip("=").replace("/", ",")
            out.append("&" + b64 + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    encoded = "".join(out)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def imap_session(lay, info, user):
    """An IMAPS session logged in as `user`, logged out (best effort) when the block ends."""
    c = imap_login(lay, info, user)
    try:
        yield c
    finally:
        try:
            c.logout()
        except Exception:
            pass


def imap_login(lay, info, user):
    users = info.get("users") or {}
    password = read_users(lay).get(user.lower()) or users.get(user.lower())
    if password is None:
        raise Failure("no such user %s (known: %s)" % (user, ", ".join(sorted(read_users(lay)))))
    port = info["ports"]["imaps"]
    try:
        c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_context(lay), timeout=30)
    except (OSError, ssl.SSLError) as e:
        raise Failure("cannot reach Dovecot IMAPS on port %d: %s" % (port, e))
    try:
        c.login(user, password)
    except imaplib.IMAP4.error as e:
        raise Failure("IMAP login of %s failed: %s" % (user, e))
    return c


FETCH_RE = re.compile(rb"UID (\d+)")
FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")


def cmd_list(args):
    lay = Layout(args.dir)
    info = load_info(lay)
    with imap_session(lay, info, args.user) as c:
        typ, data = c.select(imap_quote(args.mailbox), readonly=True)
        if typ != "OK":
            raise Failure("cannot open %s's mailbox %r: %s" % (args.user, args.mailbox, data[0].decode("utf-8", "replace")))
        messages = []
        if int(data[0]) > 0:
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            if typ != "OK":
                raise Failure("UID FETCH failed: %r" % data)
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, body = item[0], item[1]
                uid = FETCH_RE.search(head)
                flags = FLAGS_RE.search(head)
                if uid is None:
                    raise Failure("unexpected FETCH response: %r" % head[:200])
                messages.append({
                    "uid": int(uid.group(1)),
                    "flags": [f for f in flags.group(1).decode().split() if f != "\\Recent"] if flags else [],
                    "raw": base64.b64encode(body).decode(),
                })
            # Some servers send FLAGS after the literal; fill those in.
            missing = [m for m in messages if not m["flags"]]
            if missing:
                typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
                byuid = {}
                for line in data:
                    if isinstance(line, bytes):
                        u, f = FETCH_RE.search(line), FLAGS_RE.search(line)
                        if u and f:
                            byuid[int(u.group(1))] = [x for x in f.group(1).decode().split() if x != "\\Recent"]
                for m in missing:
                    m["flags"] = byuid.get(m["uid"], [])
        messages.sort(key=lambda m: m["uid"])
        print(json.dumps(messages))
    return 0


def cmd_mkmailbox(args):
    lay = Layout(args.dir)
    info = load_info(lay)
    with imap_session(lay, info, args.user) as c:
        name = imap_quote(args.name)
        typ, data = c.create(name)
        if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(d for d in data if isinstance(d, bytes)):
            raise Failure("cannot create %s's mailbox %r: %r" % (args.user, args.name, data))
        c.subscribe(name)
    return 0


def cmd_adduser(args):
    lay = Layout(args.dir)
    info = load_info(lay)
    check_user(args.user, args.password)
    uid, gid = mail_owner()
    with open(lay.users_lock, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        users = read_users(lay)
        users[args.user.lower()] = args.password
        write_users(lay, users, uid, gid)
        backdate_postfix_files(lay)
        info["users"] = users
        write_json(lay.servers_json, info)
    # Dovecot re-reads its passwd-file at most once a second: wait until its auth process knows the user.
    deadline = time.time() + 5
    while True:
        r = subprocess.run(["/usr/bin/doveadm", "-c", lay.dovecot_conf, "user", args.user.lower()],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode == 0:
            break
        if time.time() > deadline:
            raise Failure("Dovecot does not know %s after 5 s: %s" % (args.user, r.stdout.decode("utf-8", "replace")))
        time.sleep(0.2)
    # Postfix reads its texthash tables when its processes start.
    postfix_reload(lay)
    return 0


def cmd_kick(args):
    """Disconnects the user's IMAP sessions (doveadm kick), as a server restart or an admin would."""
    lay = Layout(args.dir)
    load_info(lay)
    out = run(["/usr/bin/doveadm", "-c", lay.dovecot_conf, "kick", args.user.lower()], "doveadm kick")
    print(out.strip())
    return 0


def cmd_logs(args):
    print(logs_text(Layout(args.dir), args.lines))
    return 0


def main(argv):
    ap = argparse.ArgumentParser(description="Private Dovecot + Postfix on loopback for the Chorus email tests.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start", help="start the servers from DIR (created if missing)")
    p.add_argument("dir")
    p.add_argument("--lmtp-relay", type=int, metavar="PORT", help="Postfix relays @%s mail to 127.0.0.1:PORT over LMTP" % RELAY_DOMAIN)
    p.add_argument("--parent-pid", type=int, metavar="PID", help="stop the servers when this process is gone")
    p.add_argument("--queue-lifetime", type=int, default=600, metavar="SECONDS",
                   help="Postfix gives up on (and bounces) undeliverable mail after this long (default 600)")
    p.add_argument("--oauth", action="store_true",
                   help="also run a test OAuth2 token server; Dovecot (and Postfix through it) accept XOAUTH2/OAUTHBEARER")
    p.add_argument("--oauth-token-lifetime", type=int, default=3600, metavar="SECONDS",
                   help="expires_in of the access tokens the OAuth2 server issues (default 3600)")
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop", help="stop the servers of DIR")
    p.add_argument("dir")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("deliver", help="deliver a raw message into USER's INBOX through Dovecot's LMTP")
    p.add_argument("dir")
    p.add_argument("user")
    p.add_argument("file")
    p.add_argument("--from", dest="sender", default="sender@outside.test")
    p.set_defaults(func=cmd_deliver)
    p = sub.add_parser("send", help="send a raw message to Postfix's MX-style SMTP port")
    p.add_argument("dir")
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("file")
    p.add_argument("recipients", nargs="+")
    p.set_defaults(func=cmd_send)
    p = sub.add_parser("list", help="print a mailbox as JSON: [{uid, flags, raw (base64)}]")
    p.add_argument("dir")
    p.add_argument("user")
    p.add_argument("mailbox", nargs="?", default="INBOX")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("mkmailbox", help="create and subscribe a mailbox")
    p.add_argument("dir")
    p.add_argument("user")
    p.add_argument("name")
    p.set_defaults(func=cmd_mkmailbox)
    p = sub.add_parser("adduser", help="add a user")
    p.add_argument("dir")
    p.add_argument("user")
    p.add_argument("password", nargs="?", default=DEFAULT_PASSWORD)
    p.set_defaults(func=cmd_adduser)
    p = sub.add_parser("kick", help="disconnect a user's IMAP sessions")
    p.add_argument("dir")
    p.add_argument("user")
    p.set_defaults(func=cmd_kick)
    p = sub.add_parser("logs", help="print the tails of the servers' logs")
    p.add_argument("dir")
    p.add_argument("lines", nargs="?", type=int, default=40)
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("oauth", help="OAuth2 server admin: token USER | expire | stats | rotate on|off")
    p.add_argument("dir")
    p.add_argument("action", choices=["token", "expire", "stats", "rotate"])
    p.add_argument("value", nargs="?")
    p.set_defaults(func=cmd_oauth)
    p = sub.add_parser("oauth-server")  # internal: started by `start --oauth`
    p.add_argument("dir")
    p.add_argument("--port", type=int, required=True)
    p.set_defaults(func=cmd_oauth_server)
    p = sub.add_parser("watchdog")  # internal: started by `start --parent-pid`
    p.add_argument("dir")
    p.add_argument("--parent-pid", type=int, required=True)
    p.add_argument("--parent-start", type=int, required=True)
    p.set_defaults(func=cmd_watchdog)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except Failure as e:
        print("mailservers.py %s: %s" % (args.command, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
