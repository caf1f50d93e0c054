// SPDX-License-Identifier: GPL-2.0
// Test-lab helper, not part of the agent: makes real 802.1Q-tagged traffic between two
// network namespaces on kernels built without 802.1Q (no VLAN sub-interfaces, no tc vlan
// action). Attached with tc (clsact, direct action): `vlan_push` on egress tags every
// frame with VLAN 42, `qinq_push` adds an 802.1ad tag 7 outside it; `vlan_pop` on ingress
// removes the tags again so the stack accepts the frame. Packet taps see the tagged frames
// on both sides of the wire.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define LAB_VLAN_ID 42

SEC("classifier/vlan_push")
int vlan_push(struct __sk_buff *skb)
{
	bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), LAB_VLAN_ID);
	return TC_ACT_OK;
}

#define LAB_OUTER_ID 7

SEC("classifier/qinq_push")
int qinq_push(struct __sk_buff *skb)
{
	bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), LAB_VLAN_ID);
	bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021AD), LAB_OUTER_ID);
	return TC_ACT_OK;
}

SEC("classifier/vlan_pop")
int vlan_pop(struct __sk_buff *skb)
{
	/* Each pop moves the next in-band tag into the skb's tag slot. */
	if (skb->vlan_present)
		bpf_skb_vlan_pop(skb);
	if (skb->vlan_present)
		bpf_skb_vlan_pop(skb);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
