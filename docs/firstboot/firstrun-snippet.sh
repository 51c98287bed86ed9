# --- edge: join the fleet on first boot (docs/firstboot/README.md) ---
# Paste into Raspberry Pi Imager's firstrun.sh on the card's boot partition,
# before its line `rm -f /boot/firstrun.sh` (or /boot/firmware/firstrun.sh).
# EDGE_ROOT is unset on a Pi (tests set it to a directory standing in for /).
for EDGE_BOOT in "${EDGE_ROOT:-}/boot/firmware" "${EDGE_ROOT:-}/boot"; do
	if [ -f "$EDGE_BOOT/edge/firstboot.sh" ]; then
		sh "$EDGE_BOOT/edge/firstboot.sh" >>"$EDGE_BOOT/edge/firstboot.log" 2>&1 || true
		break
	fi
done
# --- edge end ---
