# shellcheck shell=bash
# Apache Kafka in KRaft mode, run straight from the Maven Central jars: one node, or a
# cluster of N nodes on this machine (PANTAU_KAFKA_BROKERS, `pantau services up --brokers N`),
# each node both broker and controller.
#
# Node 1 listens on PANTAU_KAFKA_PORT (9092; controller 9093); node i on those ports plus
# (i-1) x PANTAU_KAFKA_PORT_STEP (100): 9192/9193, 9292/9293. Node 1 keeps the single node's
# folders (kafka/data, kafka/server.properties, run/kafka.pid, logs/kafka.log); node i has
# kafka/node-i/, run/kafka-i.pid and logs/kafka-i.log. The node count is fixed when the
# cluster is formatted (kafka/brokers): a KRaft quorum's voters are part of its metadata.

KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"
KAFKA_LOG4J="$SCRIPT_DIR/kafka/log4j2.properties"
# The pom is the single place that names the broker version; the cache folder
# follows it so that a version bump resolves fresh jars instead of mixing two.
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM" | head -n 1)
[[ -n $KAFKA_VERSION ]] || die "kafka: no <kafka.version> property in $KAFKA_POM"
KAFKA_CACHE="$STATE_DIR/cache/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_CACHE/libs"
KAFKA_MARKER="$KAFKA_CACHE/libs.complete"
KAFKA_DIR="$STATE_DIR/kafka"
KAFKA_PORT=${PANTAU_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${PANTAU_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_PORT_STEP=${PANTAU_KAFKA_PORT_STEP:-100}
KAFKA_HEAP=${PANTAU_KAFKA_HEAP:-768m}
# How many nodes the cluster was formatted with, and the id they share.
KAFKA_BROKERS_FILE="$KAFKA_DIR/brokers"
KAFKA_CLUSTER_ID_FILE="$KAFKA_DIR/cluster.id"
# An extra listener for clients that authenticate (SASL_PLAINTEXT, SCRAM-SHA-512), for tests
# of the clients' credentials: PANTAU_KAFKA_SASL_PORT names its port, PANTAU_KAFKA_SASL_USERS
# its users ("name:password" entries separated by spaces). The users are created when the log
# dir is formatted, the only way KRaft has to make the first SCRAM users. Unset: no listener.
# Single node only.
KAFKA_SASL_PORT=${PANTAU_KAFKA_SASL_PORT:-}
KAFKA_SASL_USERS=${PANTAU_KAFKA_SASL_USERS:-}
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
# What the log dir was formatted with: a digest, never the passwords themselves.
KAFKA_SASL_USERS_DIGEST="$KAFKA_DIR/scram-users.sha256"
KAFKA_START_TIMEOUT_S=${PANTAU_KAFKA_START_TIMEOUT_S:-300}

# The node count asked for (PANTAU_KAFKA_BROKERS), else the one the cluster was formatted
# with, else 1.
kafka_brokers() {
    local wanted=${PANTAU_KAFKA_BROKERS:-} formatted=""
    [[ -f $KAFKA_BROKERS_FILE ]] && read -r formatted <"$KAFKA_BROKERS_FILE"
    if [[ -n $wanted ]]; then
        [[ $wanted =~ ^[1-9]$ ]] || die "kafka: PANTAU_KAFKA_BROKERS must be 1 to 9, got '$wanted'"
        printf '%s\n' "$wanted"
    elif [[ $formatted =~ ^[1-9]$ ]]; then
        printf '%s\n' "$formatted"
    else
        printf '1\n'
    fi
}

# Where node $1 keeps what: sets NODE_PORT, NODE_CONTROLLER_PORT, NODE_DIR, NODE_DATA,
# NODE_PROPS, NODE_PID_FILE, NODE_LOG, NODE_NAME.
kafka_node() {
    local i=$1 shift_by=$((($1 - 1) * KAFKA_PORT_STEP))
    NODE_PORT=$((KAFKA_PORT + shift_by))
    NODE_CONTROLLER_PORT=$((KAFKA_CONTROLLER_PORT + shift_by))
    if ((i == 1)); then
        NODE_NAME=kafka
        NODE_DIR="$KAFKA_DIR"
        NODE_PID_FILE="$STATE_DIR/run/kafka.pid"
        NODE_LOG="$STATE_DIR/logs/kafka.log"
    else
        NODE_NAME=kafka-$i
        NODE_DIR="$KAFKA_DIR/node-$i"
        NODE_PID_FILE="$STATE_DIR/run/kafka-$i.pid"
        NODE_LOG="$STATE_DIR/logs/kafka-$i.log"
    fi
    NODE_DATA="$NODE_DIR/data"
    NODE_PROPS="$NODE_DIR/server.properties"
}

# Kept for the single node's callers (tests read the log of the first node).
kafka_node 1
KAFKA_DATA=$NODE_DATA
KAFKA_PROPS=$NODE_PROPS
KAFKA_PID_FILE=$NODE_PID_FILE
KAFKA_LOG=$NODE_LOG

kafka_java() {
    if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
        printf '%s\n' "$JAVA_HOME/bin/java"
    else
        command -v java
    fi
}

kafka_install() {
    if ! kafka_java >/dev/null; then
        apt_install openjdk-17-jre-headless
    fi
    [[ -f $KAFKA_MARKER ]] && return 0

    command -v mvn >/dev/null 2>&1 || apt_install maven
    say "kafka: resolving Kafka $KAFKA_VERSION jars from Maven Central (first run only)"
    mkdir -p "$KAFKA_CACHE"
    local tmp="$KAFKA_CACHE/libs.partial" mvn_log="$KAFKA_CACHE/maven.log"
    # Copy into a scratch folder and rename, so an interrupted download never
    # leaves a half-filled libs/ that looks usable.
    rm -rf "$tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        die_with_log "$mvn_log" "kafka: Maven could not resolve the Kafka $KAFKA_VERSION jars"
    fi
    compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null ||
        die_with_log "$mvn_log" "kafka: Maven finished but kafka_2.13-$KAFKA_VERSION.jar is not in $tmp"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$KAFKA_MARKER"
}

# The pid of node $1 (default 1) if it runs.
kafka_pid() {
    kafka_node "${1:-1}"
    our_pid "$NODE_PID_FILE" "$NODE_PROPS" "$NODE_PORT"
}

kafka_sasl_enabled() { [[ -n $KAFKA_SASL_PORT ]]; }

# PANTAU_KAFKA_SASL_USERS as kafka-storage --add-scram values, one a line.
kafka_scram_credentials() {
    local entry name password
    for entry in $KAFKA_SASL_USERS; do
        name=${entry%%:*}
        password=${entry#*:}
        [[ $entry == *:* && $name =~ ^[A-Za-z0-9._-]+$ && -n $password ]] ||
            die "kafka: PANTAU_KAFKA_SASL_USERS: expected name:password entries separated by spaces, with names of letters, digits, '.', '_' and '-'; the entry of '${name:-?}' is not one"
        # kafka-storage splits the credential at commas and reads quotes and ']' as syntax.
        [[ $password != *[,\"\]]* ]] ||
            die "kafka: PANTAU_KAFKA_SASL_USERS: the password of '$name' must not contain ',', '\"' or ']'"
        printf '%s=[name=%s,password=%s]\n' "$KAFKA_SASL_MECHANISM" "$name" "$password"
    done
}

kafka_sasl_check() {
    kafka_sasl_enabled || return 0
    [[ $KAFKA_SASL_PORT =~ ^[0-9]+$ ]] ||
        die "kafka: PANTAU_KAFKA_SASL_PORT must be a port number, got '$KAFKA_SASL_PORT'"
    [[ -n ${KAFKA_SASL_USERS// /} ]] ||
        die "kafka: PANTAU_KAFKA_SASL_PORT is set but PANTAU_KAFKA_SASL_USERS names no user: nobody could log in"
    kafka_scram_credentials >/dev/null
}

kafka_users_digest() {
    printf '%s' "$KAFKA_SASL_USERS" | sha256sum | cut -d' ' -f1
}

# server.properties of node $1 of a cluster of $2 nodes (kafka_node $1 set first).
kafka_write_config() {
    local i=$1 n=$2 listeners advertised protocols voters="" j replicas isr
    mkdir -p "$NODE_DIR" "$NODE_DATA"
    listeners="PLAINTEXT://localhost:$NODE_PORT,CONTROLLER://localhost:$NODE_CONTROLLER_PORT"
    advertised="PLAINTEXT://localhost:$NODE_PORT"
    protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if kafka_sasl_enabled; then
        listeners+=",SASL_PLAINTEXT://localhost:$KAFKA_SASL_PORT"
        advertised+=",SASL_PLAINTEXT://localhost:$KAFKA_SASL_PORT"
        protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
    fi
    for ((j = 1; j <= n; j++)); do
        voters+="${voters:+,}$j@localhost:$((KAFKA_CONTROLLER_PORT + (j - 1) * KAFKA_PORT_STEP))"
    done
    # The brokers' own topics (group offsets, transactions): three replicas, two in sync,
    # once there are that many nodes; a single node must make do with one, or the
    # coordinators never come up and consumer groups hang.
    replicas=$((n < 3 ? n : 3))
    isr=$((n < 2 ? 1 : 2))
    cat >"$NODE_PROPS" <<EOF
# Generated by scripts/services.sh on every start; edits here are overwritten.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$NODE_DATA
num.partitions=1
offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$isr
# A replica that fell behind never becomes leader: what the in-sync replicas acknowledged
# is never thrown away.
unclean.leader.election.enable=false
# Tests and the dev loop start consumers constantly; the default 3 s delay
# before the first rebalance only makes them slower.
group.initial.rebalance.delay.ms=0
# Topics are created explicitly by the project, so a typo in a topic name
# fails loudly instead of silently creating a new topic.
auto.create.topics.enable=false
EOF
    if kafka_sasl_enabled; then
        # Logins are checked against the SCRAM credentials in the metadata log. The broker's
        # own connections use the PLAINTEXT listener, so its login module needs no user.
        cat >>"$NODE_PROPS" <<EOF
sasl.enabled.mechanisms=$KAFKA_SASL_MECHANISM
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
    fi
}

kafka_java_run() {
    local java
    java=$(kafka_java) || die "kafka: java not found (run '$SCRIPT_PATH install kafka')"
    "$java" -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*" "$@"
}

# Format node $1's log dir (kafka_node $1 set first) with the cluster's id, once.
kafka_format_once() {
    local i=$1 id credential scram=()
    if [[ -f $NODE_DATA/meta.properties ]]; then
        # SCRAM users exist only from the format on: a log dir formatted with other users (or
        # none) would refuse every login, which would look like a wrong password in the client.
        if kafka_sasl_enabled &&
            [[ $(cat "$KAFKA_SASL_USERS_DIGEST" 2>/dev/null) != "$(kafka_users_digest)" ]]; then
            die "kafka: $KAFKA_DATA was formatted with other SCRAM users than PANTAU_KAFKA_SASL_USERS names; users are created only when the log dir is formatted: remove $KAFKA_DIR to start afresh"
        fi
        return 0
    fi
    if kafka_sasl_enabled; then
        while IFS= read -r credential; do
            scram+=(--add-scram "$credential")
        done < <(kafka_scram_credentials)
    fi
    say "$NODE_NAME: formatting the KRaft log dir $NODE_DATA (first run only)"
    # Node 1 formats first and picks the id; the others join it.
    if ((i == 1)) || ! read -r id 2>/dev/null <"$KAFKA_CLUSTER_ID_FILE"; then
        id=$(kafka_java_run kafka.tools.StorageTool random-uuid 2>>"$NODE_LOG" | tail -n 1) ||
            die_with_log "$NODE_LOG" "kafka: could not generate a cluster id"
        [[ $id =~ ^[A-Za-z0-9_-]{22}$ ]] ||
            die_with_log "$NODE_LOG" "kafka: StorageTool random-uuid printed '$id', expected a 22-character cluster id"
        printf '%s\n' "$id" >"$KAFKA_CLUSTER_ID_FILE"
    fi
    # The passwords are on this command line for as long as the tool runs (it takes them from
    # nowhere else); what it prints names the users, never their passwords.
    if ! kafka_java_run kafka.tools.StorageTool format -t "$id" -c "$NODE_PROPS" "${scram[@]}" \
        >>"$NODE_LOG" 2>&1; then
        die_with_log "$NODE_LOG" "kafka: formatting $NODE_DATA failed"
    fi
    if kafka_sasl_enabled; then
        kafka_users_digest >"$KAFKA_SASL_USERS_DIGEST"
        say "kafka: created $((${#scram[@]} / 2)) $KAFKA_SASL_MECHANISM user(s) for the SASL listener"
    else
        rm -f "$KAFKA_SASL_USERS_DIGEST"
    fi
}

kafka_sasl_listener_text() {
    if kafka_sasl_enabled; then
        printf ', SASL_PLAINTEXT (%s) on localhost:%s' "$KAFKA_SASL_MECHANISM" "$KAFKA_SASL_PORT"
    fi
}

# The node count the log dirs were formatted with (none yet: the one asked for).
kafka_check_brokers() {
    local n=$1 formatted=""
    [[ -f $KAFKA_BROKERS_FILE ]] && read -r formatted <"$KAFKA_BROKERS_FILE"
    if [[ -z $formatted && -f $KAFKA_DATA/meta.properties ]]; then
        formatted=1
    fi
    if [[ -n $formatted && $formatted != "$n" ]]; then
        die "kafka: $KAFKA_DIR holds a cluster of $formatted node(s), and $n were asked for; a KRaft quorum keeps its voters: run 'pantau services down kafka' and remove $KAFKA_DIR to start a cluster of $n afresh"
    fi
    if ((n > 1)) && kafka_sasl_enabled; then
        die "kafka: the SASL listener (PANTAU_KAFKA_SASL_PORT) is for a single node"
    fi
}

kafka_up() {
    local n i pid java offset extra waited=0 started=() offsets=() pids=()
    kafka_install
    mkdir -p "$STATE_DIR/run" "$STATE_DIR/logs" "$KAFKA_DIR"
    n=$(kafka_brokers)
    kafka_check_brokers "$n"
    kafka_sasl_check
    java=$(kafka_java) || die "kafka: java not found"
    # Every node that is not running is started first, then waited for together: a node of a
    # cluster finishes starting only once a majority of the controllers is up.
    for ((i = 1; i <= n; i++)); do
        # kafka_pid runs in a subshell here: the node's variables are set again outside it.
        kafka_node "$i"
        if pid=$(kafka_pid "$i"); then
            remember_pid "$NODE_PID_FILE" "$pid"
            say "$NODE_NAME: already running (pid $pid)"
            continue
        fi
        rm -f "$NODE_PID_FILE"
        ensure_port_free kafka "$NODE_PORT" PANTAU_KAFKA_PORT
        ensure_port_free kafka "$NODE_CONTROLLER_PORT" PANTAU_KAFKA_CONTROLLER_PORT
        if ((i == 1)) && kafka_sasl_enabled; then
            ensure_port_free kafka "$KAFKA_SASL_PORT" PANTAU_KAFKA_SASL_PORT
        fi
        kafka_write_config "$i" "$n"
        kafka_format_once "$i"
        printf '%s\n' "$n" >"$KAFKA_BROKERS_FILE"
        extra=""
        if ((i == 1)); then extra=$(kafka_sasl_listener_text); fi
        say "$NODE_NAME: starting broker on localhost:$NODE_PORT$extra (log: $NODE_LOG)"
        # Remember where this start begins in the appended log, so an old
        # "started" line from a previous run cannot satisfy the wait below.
        offset=$(($(stat -c %s "$NODE_LOG" 2>/dev/null || echo 0) + 1))
        # setsid: its own session, so the broker survives the caller's terminal or
        # the Python CLI that ran us. fd 9 is our lock and must not be inherited.
        setsid "$java" -Xmx"$KAFKA_HEAP" -Xms"$KAFKA_HEAP" \
            -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
            -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$NODE_PROPS" \
            </dev/null >>"$NODE_LOG" 2>&1 9>&- &
        pid=$!
        printf '%s\n' "$pid" >"$NODE_PID_FILE"
        started+=("$i")
        offsets+=("$offset")
        pids+=("$pid")
    done

    # The port opens before the broker has finished recovering its logs and
    # joined the quorum; only the "started" line means clients will be served.
    local k ready
    while ((${#started[@]})); do
        for k in "${!started[@]}"; do
            kafka_node "${started[k]}"
            pid=${pids[k]}
            if ! kill -0 "$pid" 2>/dev/null; then
                rm -f "$NODE_PID_FILE"
                die_with_log "$NODE_LOG" "$NODE_NAME: the broker exited during start-up"
            fi
            ready=0
            if port_accepts "$NODE_PORT" &&
                { ((started[k] != 1)) || ! kafka_sasl_enabled || port_accepts "$KAFKA_SASL_PORT"; } &&
                log_since "${offsets[k]}" "$NODE_LOG" | grep -q 'Kafka Server started'; then
                ready=1
            fi
            if ((ready)); then
                extra=""
                if ((started[k] == 1)); then extra=$(kafka_sasl_listener_text); fi
                say "$NODE_NAME: ready on localhost:$NODE_PORT$extra (pid $pid)"
                unset 'started[k]' 'offsets[k]' 'pids[k]'
                continue
            fi
            # A broker stopped uncleanly recovers every partition first: minutes
            # with thousands of them.
            if ((waited >= 2 * KAFKA_START_TIMEOUT_S)); then
                # Stop it rather than leave a half-started broker that the next
                # `up` would take for a running one.
                stop_pid "$NODE_NAME" "$pid" 20
                rm -f "$NODE_PID_FILE"
                die_with_log "$NODE_LOG" "$NODE_NAME: not ready on localhost:$NODE_PORT after $KAFKA_START_TIMEOUT_S s; stopped it again (PANTAU_KAFKA_START_TIMEOUT_S raises the limit)"
            fi
        done
        ((${#started[@]})) || break
        sleep 0.5
        waited=$((waited + 1))
    done
}

kafka_down() {
    local n i pid
    n=$(kafka_brokers)
    # The last node first: node 1 is the one clients bootstrap from.
    for ((i = n; i >= 1; i--)); do
        kafka_node "$i"
        if pid=$(kafka_pid "$i"); then
            say "$NODE_NAME: stopping pid $pid (controlled shutdown)"
            stop_pid "$NODE_NAME" "$pid" 60
            say "$NODE_NAME: stopped"
        else
            say "$NODE_NAME: not running"
        fi
        rm -f "$NODE_PID_FILE"
    done
}

kafka_status() {
    local n i pid rc=0
    n=$(kafka_brokers)
    for ((i = 1; i <= n; i++)); do
        kafka_node "$i"
        if pid=$(kafka_pid "$i"); then
            status_line "$NODE_NAME" running "$pid" "localhost:$NODE_PORT" "$NODE_DATA" "$NODE_LOG"
        else
            status_line "$NODE_NAME" stopped "" "localhost:$NODE_PORT" "$NODE_DATA" "$NODE_LOG"
            rc=1
        fi
    done
    return "$rc"
}
