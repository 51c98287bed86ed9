package core

// Services: cluster IP allocation.

// allocateClusterIPs gives every ClusterIP/NodePort service without an
// address one from 10.43.0.0/16 (k3s' default service range).
func (c *Controllers) allocateClusterIPs(tx Tx) error {
	services, err := TxListAs[*Service](tx, KindService, "")
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, svc := range services {
		used[svc.Spec.ClusterIP] = true
	}
	next := 10
	for _, svc := range services {
		if svc.Spec.ClusterIP != "" {
			continue
		}
		for ; next < 65534; next++ {
			ip := "10.43." + itoa(next/256) + "." + itoa(next%256)
			if !used[ip] && next%256 != 0 && next%256 != 255 {
				used[ip] = true
				cp := Clone(svc)
				cp.Spec.ClusterIP = ip
				if err := tx.Put(cp); err != nil {
					return err
				}
				break
			}
		}
	}
	return nil
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
