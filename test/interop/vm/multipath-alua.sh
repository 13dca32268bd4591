# Scenario "multipath-alua": the built-in multipath scenario against a target whose two portals are
# two ALUA target port groups (group 1 active/optimized, group 2 active/non-optimized, explicit
# ALUA: the built-in scenario reads through each path, which a standby path refuses), then
# checks that dm-multipath chose the `alua` prioritizer and that the two path groups got distinct
# priorities (tgtd, which has no TPGS, gets `const` and equal priorities).
#   run.sh --portal 127.0.0.1:P --portal2 127.0.0.1:P+1 --scenario-file test/interop/vm/multipath-alua.sh
# (lunar configured by test/interop/vm/lunar-private.sh with LUNAR_PORT2 and LUNAR_ALUA set.)
# The harness's defaults plus a device section for lunar's LUs: the `alua` prioritizer by name
# (multipath-tools' detect_prio would otherwise pick `sysfs`, which reads the same ALUA states
# through scsi_dh_alua's access_state) and path groups by priority.
cat > /etc/multipath.conf <<'CONF'
defaults {
    user_friendly_names yes
    find_multipaths yes
    polling_interval 2
}
devices {
    device {
        vendor "LUNAR"
        product "VIRTUAL-DISK"
        detect_prio no
        prio alua
        hardware_handler "1 alua"
        path_grouping_policy group_by_prio
        failback immediate
    }
}
CONF
. /vmi/scenarios/multipath.sh
algos=$(grep -oE 'sd[a-z]+: prio = [a-z_]+' /run/vmi/multipathd.log | sed 's/.*= //' | sort -u | tr '\n' ' ')
[ "$algos" = "alua " ] && pass alua-prioritizer "multipathd: prio = alua on every path" \
  || fail alua-prioritizer "prioritizers seen: '${algos:-none}' (want alua)"
prios=$(sed -n 's/.* prio=\([0-9]*\) status=.*/\1/p' /run/vmi/mp-ll.log | tr '\n' ' ')
ndistinct=$(printf '%s\n' $prios | sort -u | grep -c .)
[ "$ndistinct" -ge 2 ] && pass alua-distinct-prio "path group priorities: $prios" \
  || fail alua-distinct-prio "path group priorities: '$prios' (want two different values)"
