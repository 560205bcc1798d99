#!/usr/bin/env bats
# stpipe batch on GNU parallel, and stages over ssh. The tests start their
# own sshd on 127.0.0.1 at a free port, with a throw-away host key and
# user key in a temporary folder, and stop it at the end; "testhost" is
# that sshd, a second host beside this machine (":").

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

setup_file() {
	export ROOT="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
	export PATH="$ROOT/bin:$PATH"
	export FIX="$ROOT/t/fixtures"
	export WEIGHTS="${STP_WEIGHTS:-$ROOT/../shared/weights}"
	[ -f "$FIX/all.safetensors" ] || tclsh "$ROOT/t/mkfixtures.tcl" "$FIX"
	# a sharded model folder of the fixtures: shards, index, config
	export MODEL="$BATS_FILE_TMPDIR/model"
	cp -r "$FIX/model" "$MODEL"
	export SSHD_WHY=
	start_sshd || true
}

teardown_file() {
	[ -f "$BATS_FILE_TMPDIR/ssh/sshd.pid" ] &&
		kill "$(cat "$BATS_FILE_TMPDIR/ssh/sshd.pid")" 2> /dev/null
	true
}

start_sshd() {
	local d="$BATS_FILE_TMPDIR/ssh" port sshd=/usr/sbin/sshd
	[ -x "$sshd" ] || { SSHD_WHY="no $sshd (apt-get install openssh-server)"; return 1; }
	command -v ssh-keygen > /dev/null || { SSHD_WHY="no ssh-keygen"; return 1; }
	mkdir -p "$d"
	[ "$(id -u)" = 0 ] && mkdir -p /run/sshd
	ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
	ssh-keygen -q -t ed25519 -N '' -f "$d/user_key"
	cp "$d/user_key.pub" "$d/authorized_keys"
	chmod 600 "$d/authorized_keys"
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2> /dev/null ||
		echo $((20000 + RANDOM % 20000)))
	cat > "$d/sshd_config" <<-EOF
		Port $port
		ListenAddress 127.0.0.1
		HostKey $d/host_key
		AuthorizedKeysFile $d/authorized_keys
		PidFile $d/sshd.pid
		StrictModes no
		UsePAM no
		PermitRootLogin yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		SetEnv PATH=$ROOT/bin:/usr/bin:/bin
	EOF
	cat > "$d/ssh_config" <<-EOF
		Host testhost
		  HostName 127.0.0.1
		  Port $port
		  User $(id -un)
		  IdentityFile $d/user_key
		  IdentitiesOnly yes
		  StrictHostKeyChecking no
		  UserKnownHostsFile /dev/null
		  BatchMode yes
		  LogLevel ERROR
	EOF
	"$sshd" -f "$d/sshd_config" -E "$d/sshd.log" 2> "$d/start.log" ||
		{ SSHD_WHY="sshd does not start: $(head -1 "$d/start.log")"; return 1; }
	for _ in $(seq 50); do
		ssh -F "$d/ssh_config" testhost true 2> /dev/null && break
		sleep 0.1
	done
	ssh -F "$d/ssh_config" testhost true 2> "$d/probe.log" ||
		{ SSHD_WHY="cannot log in to the test sshd: $(head -1 "$d/probe.log")"; return 1; }
	export STPIPE_SSH="ssh -F $d/ssh_config"
}

need_sshd() {
	[ -z "$SSHD_WHY" ] || skip "$SSHD_WHY"
	command -v parallel > /dev/null || skip "no GNU parallel (apt-get install parallel)"
}

need_parallel() {
	command -v parallel > /dev/null || skip "no GNU parallel (apt-get install parallel)"
}

setup() {
	cd "$BATS_TEST_TMPDIR"
}

@test "stpipe batch --help, and usage errors exit 100 with one line" {
	run stpipe batch --help
	assert_success
	assert_output --partial "Usage: stpipe batch"
	run stpipe batch "$MODEL"
	assert_failure 100
	assert_output "stpipe batch: no -o OUTDIR (stpipe batch --help)"
	run stpipe batch -o out -m nope "$MODEL"
	assert_failure 100
	run stpipe batch -o out --bogus "$MODEL"
	assert_failure 100
	run stpipe batch -o out no/such/input
	assert_failure 111
}

@test "a folder: one job a shard, each as stpipe compress alone writes it; -d restores the identical folder" {
	need_parallel
	run stpipe batch -j 2 -o out "$MODEL"
	assert_success
	assert_output --partial "jobs done, 0 failed"
	n=0
	for s in "$MODEL"/*.safetensors; do
		stpipe compress -q -f "$s" -o alone.stz
		cmp alone.stz "out/model/$(basename "$s").stz"
		n=$((n + 1))
	done
	[ "$n" -ge 2 ]
	# the index in the compressed folder names the .stz shards
	run python3 -c 'import json,sys; w = json.load(open(sys.argv[1]))["weight_map"]; print(sorted(set(w.values())))' \
		out/model/model.safetensors.index.json
	assert_output --partial ".safetensors.stz'"
	run stpipe batch -d -j 2 -o back out/model
	assert_success
	diff -r "$MODEL" back/model
	# a .stz of a whole folder (stpipe compress DIR) restores to a folder
	stpipe compress -q "$MODEL" -o whole.stz
	run stpipe batch -d -o back2 whole.stz
	assert_success
	diff -r "$MODEL" back2/whole
}

@test "two hosts (this machine and the test sshd): the same bytes as one" {
	need_sshd
	stpipe batch -q -j 1 -o one "$MODEL"
	run stpipe batch -S ':,testhost' -o two "$MODEL"
	assert_success
	assert_output --partial "on 2 host(s)"
	diff -r one/model two/model
	grep -q 'Accepted publickey' "$BATS_FILE_TMPDIR/ssh/sshd.log"
	run stpipe batch -d -S 'testhost' -o back two/model
	assert_success
	diff -r "$MODEL" back/model
	# --shared: the same paths there; --paranoid: a round trip
	run stpipe batch --shared --paranoid -S testhost -o shared "$MODEL"
	assert_success
	diff -r one/model shared/model
	printf 'testhost\n:\n' > hosts
	run stpipe batch --sshloginfile hosts -m ctx -o ctx "$MODEL"
	assert_success
	stpipe compress -q -m ctx "$MODEL/model-00001-of-00002.safetensors" -o alone.stz
	cmp alone.stz ctx/model/model-00001-of-00002.safetensors.stz
}

@test "a host that fails: its jobs go to the other, reported, none dropped" {
	need_sshd
	run stpipe batch -S 'nohost.invalid,testhost' -o out "$MODEL"
	assert_success
	assert_output --partial "failed on nohost.invalid (exit 255), trying the next host"
	stpipe batch -q -o ref "$MODEL"
	diff -r ref/model out/model
	# every host failing: exit 111, the job named, nothing under its name
	run stpipe batch -S 'nohost.invalid' -o bad "$MODEL"
	assert_failure 111
	assert_output --partial "not done: $MODEL/model-00001-of-00002.safetensors"
	[ ! -e bad/model/model-00001-of-00002.safetensors.stz ]
	run find bad -name '*.part*'
	assert_output ""
}

@test "a run killed midway: the same command again finishes only the rest, byte-exact" {
	need_parallel
	# many jobs, one slot, killed after the first outputs appear
	mkdir -p many
	for i in $(seq 12); do cp "$FIX/dtype-BF16.safetensors" "many/s$i.safetensors"; done
	cp "$WEIGHTS/tinylm-7m/bf16/model-00001-of-00002.safetensors" many/big.safetensors 2> /dev/null || true
	setsid stpipe batch -q -j 1 -o out many &
	pid=$!
	for _ in $(seq 100); do
		[ "$(ls out/many 2> /dev/null | grep -c '\.stz$')" -ge 3 ] && break
		sleep 0.05
	done
	kill -TERM -- -"$pid" 2> /dev/null || kill "$pid"
	wait "$pid" || true
	done_before=$(ls out/many | grep -c '\.stz$' || true)
	[ "$done_before" -lt "$(ls many | wc -l)" ] || skip "the run ended before it was killed"
	# nothing partial under an output name: every .stz there is whole
	for f in out/many/*.stz; do stpipe verify -q "$f"; done
	run stpipe batch -j 2 -o out many
	assert_success
	# the job log: each job done exactly once over both runs
	run bash -c "awk -F'\t' 'NR > 1 && \$7 == 0 { print \$NF }' out/.stpipe-batch/joblog | sort | uniq -d"
	assert_output ""
	[ "$(awk -F'\t' 'NR > 1 && $7 == 0' out/.stpipe-batch/joblog | wc -l)" -eq "$(ls many | wc -l)" ]
	for f in many/*.safetensors; do
		stpipe compress -q -f "$f" -o alone.stz
		cmp alone.stz "out/many/$(basename "$f").stz"
	done
	run find out -name '.*.part.*'
	assert_output ""
}

@test "ssh connections killed midway: the jobs fail with 111, the rerun completes byte-exact" {
	need_sshd
	[ -d "$WEIGHTS" ] || skip "no real weights at $WEIGHTS (shards big enough to cut)"
	mkdir -p shards
	for i in 1 2 3 4; do
		cp "$WEIGHTS/tinylm-7m/bf16/model-00001-of-00002.safetensors" "shards/s$i.safetensors"
	done
	stpipe batch -S testhost -j 2 -o out shards > log 2>&1 &
	pid=$!
	# kill the sessions of the test sshd as soon as there are some
	for _ in $(seq 200); do
		pkill -KILL -P "$(cat "$BATS_FILE_TMPDIR/ssh/sshd.pid")" && break
		sleep 0.02
	done
	wait "$pid" && st=0 || st=$?
	if [ "$st" = 0 ]; then
		skip "the jobs ended before their connections were killed"
	fi
	[ "$st" = 111 ]
	grep -q 'failed on testhost' log
	run find out -name '*.part*'
	assert_output ""
	for f in out/shards/*.stz; do [ -e "$f" ] && stpipe verify -q "$f"; done
	run stpipe batch -S testhost -j 2 -o out shards
	assert_success
	for f in shards/*.safetensors; do
		stpipe compress -q -f "$f" -o alone.stz
		cmp alone.stz "out/shards/$(basename "$f").stz"
	done
}

@test "pipeline over ssh: byte for byte both ways" {
	need_sshd
	f="$FIX/model/model-00001-of-00002.safetensors"
	st-split "$f" | fp8-exp | rans-enc > local.stz
	st-split "$f" | fp8-exp | $STPIPE_SSH testhost rans-enc > remote.stz
	cmp local.stz remote.stz
	$STPIPE_SSH testhost 'rans-dec | fp8-exp -d' < remote.stz | st-join -o back.safetensors
	cmp "$f" back.safetensors
}

@test "a dropped connection midway: the stages exit 111 or 1 with one line, nothing is left" {
	need_sshd
	[ -d "$WEIGHTS" ] || skip "no real weights at $WEIGHTS (a stream long enough to cut)"
	f="$WEIGHTS/tinylm-7m/bf16/model-00001-of-00002.safetensors"
	stpipe compress -q "$f" -o m.stz
	# the remote end reads a little and the connection goes away
	run bash -c "set -o pipefail; st-split '$f' | fp8-exp | $STPIPE_SSH testhost 'head -c 100000 > /dev/null; kill -9 \$PPID' > cut.stz"
	assert_failure
	assert_output --partial "fp8-exp: stdout: Broken pipe"
	run bash -c "st-split '$f' | fp8-exp | $STPIPE_SSH testhost 'head -c 100000 > /dev/null; kill -9 \$PPID'; echo \"\${PIPESTATUS[@]}\""
	assert_line --regexp '^(0|111) 111 255$'
	# the other way: st-join names nothing it could not check
	run bash -c "$STPIPE_SSH testhost 'head -c 300000; kill -9 \$PPID' < m.stz | rans-dec | fp8-exp -d | st-join -o back.safetensors; echo \"\${PIPESTATUS[@]}\""
	assert_line --regexp '^255 1 (1|111) 1$'
	[ ! -e back.safetensors ]
	run ls -A
	refute_output --partial "back.safetensors"
}
