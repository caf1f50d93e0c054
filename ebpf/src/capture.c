// SPDX-License-Identifier: GPL-2.0
// apiwatch capture: a TC classifier (attached on ingress and egress) that keeps the TCP
// segments of the watched ports and copies them, header fields plus payload, into a ring
// buffer for the agent. It never changes or drops traffic (always TC_ACT_OK).
//
// - Ports are in the `ports` hash map, updated by the agent on reload (no reattach).
// - Payload goes in fixed-size records (the ring buffer reserves constant sizes): a small
//   record for short segments, large records in a bounded loop for long ones, because
//   GSO/GRO super-packets of 64 KiB and more reach TC.
// - Wakeups are batched: a record is submitted without wakeup until WAKEUP_BYTES are
//   waiting; the agent also drains on a short timer.
// - Counters (per CPU): packets seen, packets kept, records, reserve failures, chunks cut.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define SMALL 256
#define LARGE 16384
#define MAX_CHUNKS 16
#define WAKEUP_BYTES (1 << 20)
#define TCP_FLAG_FIN_BIT 0x01
#define TCP_FLAG_SYN_BIT 0x02

// Shared with agent/src/ebpf.rs (RecordHeader): keep the layouts identical.
struct rec_hdr {
	__u64 ts_ns;      // bpf_ktime_get_ns (CLOCK_MONOTONIC)
	__u32 saddr[4];   // IPv4 in saddr[0] (network order), or IPv6
	__u32 daddr[4];
	__u32 seq;        // sequence number of the first payload byte of this record
	__u32 ack;
	__u32 ifindex;
	__u32 seg_len;    // payload length of the whole segment
	__u16 sport;      // host order
	__u16 dport;
	__u16 len;        // payload bytes in this record
	__u8 flags;       // TCP flags (FIN only on the last record of a segment)
	__u8 family;      // 4 or 6
	__u8 direction;   // 0 ingress, 1 egress
	__u8 pad[3];
	__u32 wire_len;   // skb->len on the first record of a segment (headers included), 0 on the others
};

struct rec_small {
	struct rec_hdr h;
	__u8 data[SMALL];
};

struct rec_large {
	struct rec_hdr h;
	__u8 data[LARGE];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

enum { C_SEEN, C_KEPT, C_RECORDS, C_RESERVE_FAILED, C_CUT, C_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &which);
	if (v)
		*v += 1;
}

static __always_inline __u64 wake_flag(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 direction)
{
	struct rec_hdr h = {};
	struct ethhdr eth;
	__u32 off = sizeof(eth);
	__u32 l4, end;
	__u16 proto;

	count(C_SEEN);
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return TC_ACT_OK;
	proto = eth.h_proto;
	// In-band VLAN tags (accelerated ones are not in the data).
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
			if (bpf_skb_load_bytes(skb, off + 2, &proto, sizeof(proto)))
				return TC_ACT_OK;
			off += 4;
		}
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) || ip.protocol != IPPROTO_TCP)
			return TC_ACT_OK;
		// Fragments have no ports here: not handled in the kernel.
		if (ip.frag_off & bpf_htons(0x3fff))
			return TC_ACT_OK;
		__u32 tot = bpf_ntohs(ip.tot_len);
		if (tot == 0) // BIG TCP
			tot = skb->len - off;
		h.family = 4;
		h.saddr[0] = ip.saddr;
		h.daddr[0] = ip.daddr;
		l4 = off + ip.ihl * 4;
		end = off + tot;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) || ip6.nexthdr != IPPROTO_TCP)
			return TC_ACT_OK;
		__u32 plen = bpf_ntohs(ip6.payload_len);
		if (plen == 0)
			plen = skb->len - off - sizeof(ip6);
		h.family = 6;
		__builtin_memcpy(h.saddr, &ip6.saddr, 16);
		__builtin_memcpy(h.daddr, &ip6.daddr, 16);
		l4 = off + sizeof(ip6);
		end = l4 + plen;
	} else {
		return TC_ACT_OK;
	}

	struct tcphdr tcp;
	if (bpf_skb_load_bytes(skb, l4, &tcp, sizeof(tcp)))
		return TC_ACT_OK;
	h.sport = bpf_ntohs(tcp.source);
	h.dport = bpf_ntohs(tcp.dest);
	if (!bpf_map_lookup_elem(&ports, &h.dport) && !bpf_map_lookup_elem(&ports, &h.sport))
		return TC_ACT_OK;
	count(C_KEPT);

	__u32 payload = l4 + tcp.doff * 4;
	if (end > skb->len)
		end = skb->len;
	__u32 total = end > payload ? end - payload : 0;
	__u8 flags = ((__u8 *)&tcp)[13];
	h.ts_ns = bpf_ktime_get_ns();
	h.seq = bpf_ntohl(tcp.seq);
	h.ack = bpf_ntohl(tcp.ack_seq);
	h.ifindex = skb->ifindex;
	h.seg_len = total;
	h.direction = direction;
	h.wire_len = skb->len;

	// Lengths handed to bpf_skb_load_bytes must be provably in [1, size]: records carry at
	// most size - 1 bytes (sizes are powers of two) and the length is masked, which the
	// verifier follows (a range check on a copy it does not).
	if (total < SMALL) {
		struct rec_small *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
		if (!r) {
			count(C_RESERVE_FAILED);
			return TC_ACT_OK;
		}
		r->h = h;
		r->h.len = total;
		r->h.flags = flags;
		__u32 n = total;
		// The barrier keeps clang from dropping the mask as redundant.
		asm volatile("" : "+r"(n));
		n &= SMALL - 1;
		if (n != 0)
			bpf_skb_load_bytes(skb, payload, r->data, n);
		bpf_ringbuf_submit(r, wake_flag());
		count(C_RECORDS);
		return TC_ACT_OK;
	}

	__u32 done = 0;
	for (int i = 0; i < MAX_CHUNKS; i++) {
		if (done >= total)
			break;
		__u32 n = total - done;
		if (n > LARGE - 1)
			n = LARGE - 1;
		asm volatile("" : "+r"(n));
		n &= LARGE - 1;
		if (n == 0)
			break;
		struct rec_large *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
		if (!r) {
			count(C_RESERVE_FAILED);
			return TC_ACT_OK;
		}
		r->h = h;
		r->h.seq = h.seq + done;
		if (done > 0)
			r->h.wire_len = 0;
		r->h.len = n;
		// SYN only on the first record, FIN only on the last.
		r->h.flags = flags & ~((done > 0 ? TCP_FLAG_SYN_BIT : 0) | (done + n < total ? TCP_FLAG_FIN_BIT : 0));
		bpf_skb_load_bytes(skb, payload + done, r->data, n);
		bpf_ringbuf_submit(r, wake_flag());
		count(C_RECORDS);
		done += n;
	}
	if (done < total)
		count(C_CUT);
	return TC_ACT_OK;
}

SEC("classifier")
int capture_ingress(struct __sk_buff *skb)
{
	return handle(skb, 0);
}

SEC("classifier")
int capture_egress(struct __sk_buff *skb)
{
	return handle(skb, 1);
}

char LICENSE[] SEC("license") = "GPL";
