# Scenario "pr-aptpl": a persistent reservation made with APTPL=1 survives a restart of lunar.
# One I_T nexus registers a key with APTPL (sg_persist --param-aptpl), reserves type 5, then the
# host restarts lunar (fault hook: test/interop/vm/lunar-private.sh restart); after the reconnect the
# key, the reservation and PTPL_A are still there. The scenario CLEARs the LU at the end.
#   run.sh --portal 127.0.0.1:PORT --target IQN --scenario-file test/interop/vm/pr-aptpl.sh \
#          --fault-hook "$PWD/test/interop/vm/lunar-private.sh restart"  (see scenarios.interop.test.ts)
# Tunables (--set k=v): pr_key (0xabcdef01).
require_config
discover discovery
K=${VMI_PR_KEY:-0xabcdef01}
login_as a "$VMI_INITIATOR-a" login-a
A=$DEV_a
for i in 1 2 3; do sg_turs "$A" >/dev/null 2>&1; done
hexn() { printf '0x%x' "$(( $1 ))"; }
keys() { sg_persist --in --read-keys "$A" 2>/dev/null | sed -n 's/^ *\(0x[0-9a-fA-F]*\) *$/\1/p' | tr '\n' ' '; }
resv() { sg_persist --in --read-reservation "$A" 2>/dev/null | sed -n 's/^ *Key=\(0x[0-9a-fA-F]*\).*/\1/p' | head -1; }

# clean start: register ignoring any old key, clear
sg_persist --out --register-ignore --param-sark="$K" "$A" >/run/vmi/pr-clean.log 2>&1
sg_persist --out --clear --param-rk="$K" "$A" >>/run/vmi/pr-clean.log 2>&1
sg_turs "$A" >/dev/null 2>&1

if sg_persist --out --register --param-sark="$K" --param-aptpl "$A" >/run/vmi/register-aptpl.log 2>&1; then
  pass register-aptpl "key $K with APTPL=1"
else abort register-aptpl "sg_persist rc=$?"; fi
if sg_persist --out --reserve --param-rk="$K" --prout-type=5 "$A" >/run/vmi/reserve.log 2>&1; then
  pass reserve "type 5 by $K"
else abort reserve "sg_persist rc=$?"; fi
caps=$(sg_persist --in --report-capabilities "$A" 2>/dev/null)
printf '%s\n' "$caps" | grep -q 'PTPL_A.*: *1' && pass ptpl-a "PTPL_A=1 before the restart" \
  || fail ptpl-a "$(printf '%s' "$caps" | grep -E 'PTPL' | tr '\n' ' ')"

request_fault fault-injected restart-lunar

# the session comes back by itself (open-iscsi recovery); the first commands see unit attentions
wait_for 120 sg_turs "$A" || wait_for 30 sg_turs "$A"
for i in 1 2 3; do sg_turs "$A" >/dev/null 2>&1; done
k=$(keys)
case " $k " in
  *" $(hexn "$K") "*|*" $K "*) pass keys-after-restart "keys: $k" ;;
  *) fail keys-after-restart "keys after restart: '$k' (want $K)" ;;
esac
r=$(resv)
if [ -n "$r" ] && [ "$(hexn "$r")" = "$(hexn "$K")" ]; then pass reservation-after-restart "holder $r"
else fail reservation-after-restart "reservation key after restart: '$r' (want $K)"; fi

sg_persist --out --release --param-rk="$K" --prout-type=5 "$A" >/run/vmi/cleanup.log 2>&1
sg_persist --out --clear --param-rk="$K" "$A" >>/run/vmi/cleanup.log 2>&1
[ -z "$(keys | tr -d ' ')" ] && pass cleanup "no keys left" || fail cleanup "keys left: $(keys)"
logout_as a logout-a
