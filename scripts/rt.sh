#!/usr/bin/env bash
# A private Request Tracker 5 for tests: Debian's packages, a fresh SQLite database in a
# directory of its own, and RT's standalone server on a free loopback port.
#
#   scripts/rt.sh install                     # install RT's packages when missing (as root)
#   scripts/rt.sh start DIR [--watch-pid PID] # fresh instance in DIR; prints its base URL last
#   scripts/rt.sh stop DIR                    # stops the server started in DIR
#
# `start` installs the packages first when they are missing. It writes DIR/credentials.env
# (RT_URL, RT_ROOT_PASSWORD, RT_ROOT_TOKEN, RT_AGENT_USER, RT_AGENT_PASSWORD, RT_PID) and
# the server's log to DIR/log/. With --watch-pid, the server is stopped and DIR removed once
# process PID has exited (a test binary passes its own pid).
#
# The instance: queue General; `root` (SuperUser, random password, plus an auth token) is the
# integration user; `agent` is a privileged user with the usual ticket rights in every queue,
# acting in RT the way a human agent would; the ticket custom fields `Switchboard External ID`
# and `Switchboard Idempotency Key` apply to every queue. Mail is written to DIR/var/*.mbox,
# never sent. REST 2.0 is part of RT 5 and needs no switch; it is at <url>/REST/2.0/.
set -euo pipefail

PACKAGES=(request-tracker5 rt5-db-sqlite rt5-standalone dbconfig-no-thanks)
RT_SERVER=/usr/share/request-tracker5/libexec/rt-server
SETUP_DATABASE=/usr/sbin/rt-setup-database-5

say() { echo "rt.sh: $*" >&2; }
die() { say "$*"; exit 1; }

installed() {
    [[ -x "$RT_SERVER" && -x "$SETUP_DATABASE" ]] \
        && perl -MDBD::SQLite -MStarlet -e 1 2>/dev/null
}

install() {
    if installed; then
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        die "Request Tracker 5 is not installed and this is not root; as root run: $0 install" \
            "(or install ${PACKAGES[*]}), or set SWITCHBOARD_SKIP_RT=1 to skip the RT tests"
    fi
    local started=$SECONDS
    say "installing ${PACKAGES[*]} from Debian's packages"
    # No cron jobs, and (dbconfig-no-thanks) no database from the package scripts: every
    # instance makes its own. Debconf asks nothing else that has no usable default.
    echo "request-tracker5 request-tracker5/install-cronjobs boolean false" | debconf-set-selections
    if ! apt-cache show request-tracker5 >/dev/null 2>&1; then
        apt-get update -q >&2
    fi
    local apt_install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q
        --no-install-recommends -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
        -o Dpkg::Options::=--force-confold "${PACKAGES[@]}")
    if ! "${apt_install[@]}" >&2; then
        # Stale package lists name files the mirror no longer has: refresh them once.
        apt-get update -q >&2
        "${apt_install[@]}" >&2
    fi
    installed || die "the packages installed but $RT_SERVER or its Perl modules are missing"
    say "installed in $((SECONDS - started)) s"
}

free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0,
                                      Proto => "tcp") or die "no free port: $!\n";
        print $s->sockport, "\n";'
}

random_secret() {
    od -An -tx1 -N12 /dev/urandom | tr -d ' \n'
}

write_site_config() {
    local dir=$1 port=$2
    cat >"$dir/etc/RT_SiteConfig.pm" <<EOF
# Written by scripts/rt.sh: a throwaway test instance. RT_SITE_CONFIG_DIR points at an empty
# directory, so the system's /etc/request-tracker5 snippets do not apply.
Set(\$rtname, 'switchboard-test');
Set(\$Organization, 'switchboard.test');
Set(\$CorrespondAddress, 'rt@switchboard.test');
Set(\$CommentAddress, 'rt-comment@switchboard.test');
Set(\$Timezone, 'UTC');

Set(\$DatabaseType, 'SQLite');
Set(\$DatabaseName, '$dir/rt.sqlite');

Set(\$WebDomain, '127.0.0.1');
Set(\$WebPort, $port);
Set(\$WebPath, '');
Set(\$WebBaseURL, 'http://127.0.0.1:$port');

# REST 2.0 checks the password or token with bcrypt on every request: at RT's default cost
# (12) that is a few tenths of a second each on a busy two-core machine. Test passwords need
# no strength.
Set(\$BcryptCost, 4);

# Never send mail: keep it in DIR/var/*.mbox.
Set(\$MailCommand, 'mbox');

Set(\$LogToSyslog, undef);
Set(\$LogToSTDERR, 'warning');
Set(\$LogToFile, 'info');
Set(\$LogDir, '$dir/log');
Set(\$LogToFileNamed, 'rt.log');

# Everything the instance writes stays in DIR.
\$RT::VarPath = '$dir/var';
\$RT::MasonDataDir = '$dir/var/mason_data';
\$RT::MasonSessionDir = '$dir/var/session_data';

1;
EOF
}

write_initial_data() {
    local dir=$1 root_password=$2 agent_password=$3
    cat >"$dir/etc/initialdata" <<EOF
# Written by scripts/rt.sh: the test instance's users, rights and custom fields.
@Users = (
    { Name => 'agent', Password => '$agent_password', EmailAddress => 'agent@switchboard.test',
      RealName => 'Hana Agent', Privileged => 1 },
);

# Global (ApplyTo 0): they apply to every queue, including those tests create.
@CustomFields = (
    { Name => 'Switchboard External ID', Type => 'FreeformSingle',
      LookupType => 'RT::Queue-RT::Ticket', ApplyTo => 0,
      Description => 'The conversation the ticket belongs to, as Switchboard names it' },
    { Name => 'Switchboard Idempotency Key', Type => 'FreeformSingle',
      LookupType => 'RT::Queue-RT::Ticket', ApplyTo => 0,
      Description => 'Makes Switchboard ticket creation safe to retry' },
);

# What a human agent needs, granted globally so that it holds in every queue; root is
# SuperUser and needs nothing.
@ACL = (
    map { { GroupDomain => 'SystemInternal', GroupType => 'Privileged', Right => \$_ } }
        qw(SeeQueue ShowTicket ShowTicketComments CreateTicket ReplyToTicket CommentOnTicket
           ModifyTicket OwnTicket TakeTicket SeeCustomField ModifyCustomField),
);

@Final = (
    sub {
        my \$root = RT::User->new(RT->SystemUser);
        \$root->Load('root');
        my (\$ok, \$msg) = \$root->SetPassword('$root_password');
        die "setting root's password: \$msg\n" unless \$ok;

        my \$token = RT::AuthToken->new(RT->SystemUser);
        my (\$id, \$why, \$authstring) =
            \$token->Create(Owner => \$root->id, Description => 'switchboard tests');
        die "creating root's auth token: \$why\n" unless \$id;
        open my \$fh, '>', '$dir/etc/root.token' or die "writing the token: \$!\n";
        print \$fh \$authstring;
        close \$fh;
    },
);
EOF
}

wait_until_up() {
    local url=$1 pid=$2 log=$3
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "rt-server exited; the end of $log:"
            tail -n 30 "$log" >&2 || true
            return 1
        fi
        # Any HTTP answer means it serves (REST2 says 401 without credentials).
        if perl -MHTTP::Tiny -e 'exit(HTTP::Tiny->new(timeout => 2)->get($ARGV[0])->{status} < 599 ? 0 : 1)' \
            "$url/REST/2.0/rt" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    say "rt-server did not answer within 30 s; the end of $log:"
    tail -n 30 "$log" >&2 || true
    return 1
}

start() {
    local dir=${1:-} watch_pid=
    [[ -n "$dir" ]] || die "usage: $0 start DIR [--watch-pid PID]"
    shift
    if [[ "${1:-}" == "--watch-pid" ]]; then
        watch_pid=${2:?--watch-pid needs a pid}
    fi
    install
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -e "$dir/rt.sqlite" ]]; then
        die "$dir already holds an RT instance; stop it and remove the directory first"
    fi
    mkdir -p "$dir/etc/site.d" "$dir/var/mason_data" "$dir/var/session_data" "$dir/log"
    export RT_SITE_CONFIG="$dir/etc/RT_SiteConfig.pm" RT_SITE_CONFIG_DIR="$dir/etc/site.d"

    local root_password agent_password started=$SECONDS
    root_password=$(random_secret)
    agent_password=$(random_secret)
    write_initial_data "$dir" "$root_password" "$agent_password"
    # The port is only in the web settings: pick it now, the database does not depend on it.
    local port
    port=$(free_port)
    write_site_config "$dir" "$port"

    "$SETUP_DATABASE" --action init --dba-password '' </dev/null >"$dir/log/setup.log" 2>&1 \
        || { tail -n 30 "$dir/log/setup.log" >&2; die "rt-setup-database --action init failed"; }
    "$SETUP_DATABASE" --action insert --datafile "$dir/etc/initialdata" </dev/null \
        >>"$dir/log/setup.log" 2>&1 \
        || { tail -n 30 "$dir/log/setup.log" >&2; die "inserting the test data failed"; }
    say "database ready in $((SECONDS - started)) s"

    local url pid attempt
    started=$SECONDS
    for attempt in 1 2 3; do
        url="http://127.0.0.1:$port"
        setsid "$RT_SERVER" --server Starlet --host 127.0.0.1 --port "$port" --max-workers 4 \
            </dev/null >"$dir/log/server.log" 2>&1 &
        pid=$!
        echo "$pid" >"$dir/rt-server.pid"
        if wait_until_up "$url" "$pid" "$dir/log/server.log"; then
            break
        fi
        kill -- "-$pid" 2>/dev/null || true
        # Most likely someone took the port in between: try another.
        [[ $attempt == 3 ]] && die "rt-server did not start"
        port=$(free_port)
        write_site_config "$dir" "$port"
    done
    say "rt-server (pid $pid) up in $((SECONDS - started)) s"

    cat >"$dir/credentials.env" <<EOF
RT_URL=$url
RT_ROOT_PASSWORD=$root_password
RT_ROOT_TOKEN=$(cat "$dir/etc/root.token")
RT_AGENT_USER=agent
RT_AGENT_PASSWORD=$agent_password
RT_PID=$pid
EOF

    if [[ -n "$watch_pid" ]]; then
        # Detached, so it outlives this script; it ends with the server.
        setsid bash -c '
            while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
            kill -- "-$2" 2>/dev/null
            sleep 1
            kill -KILL -- "-$2" 2>/dev/null
            rm -rf -- "$3"' rt-watch "$watch_pid" "$pid" "$dir" </dev/null >/dev/null 2>&1 &
    fi
    echo "$url"
}

stop() {
    local dir=${1:?usage: $0 stop DIR}
    local pid
    pid=$(cat "$dir/rt-server.pid" 2>/dev/null) || die "no rt-server.pid in $dir"
    # The server runs in a session of its own (setsid): end its process group.
    kill -- "-$pid" 2>/dev/null || say "rt-server $pid was not running"
}

case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) die "usage: $0 install | start DIR [--watch-pid PID] | stop DIR" ;;
esac
