package slirp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// LoopbackUp brings up lo in the calling thread's network namespace. Every
// thread of a process born with CLONE_NEWNET shares that namespace, so the
// sandbox's init needs no locked thread for it.
func LoopbackUp() error {
	return withInetSocket(func(fd int) error { return setUp(fd, "lo") })
}

// ConfigureChild finishes the network inside the sandbox: lo and c.Rules
// always, and with c.CreateTap the tap device (or veth pair, c.Veth), its
// address, MTU and default route. It returns the tap (or the packet socket
// of the veth pair; nil unless c.CreateTap), which the caller must pass to
// the parent's Network.AttachTap and then close. In --net host it
// does nothing: the host's interfaces are not the sandbox's to change.
func ConfigureChild(c ChildConfig) (*os.File, error) {
	if c.Mode == ModeHost {
		return nil, nil
	}
	if err := LoopbackUp(); err != nil {
		return nil, fmt.Errorf("bringing up lo: %w", err)
	}
	var tap *os.File
	if c.CreateTap {
		var err error
		if c.Veth {
			tap, err = createVeth(c.Device, c.MTU)
		} else {
			tap, err = createTap(c.Device)
		}
		if err != nil {
			return nil, err
		}
		if err := configureInterface(c); err != nil {
			tap.Close()
			return nil, err
		}
	}
	// After the default route: the kernel checks that its gateway is
	// reachable, which the rules deny.
	if err := addRules(c.Rules); err != nil {
		if tap != nil {
			tap.Close()
		}
		return nil, err
	}
	return tap, nil
}

// tapOffloads is TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6: the tap passes TCP
// segments of up to 64 KiB whole, with their checksums left undone, to the
// parent's stack, which is told so by the virtio header before each frame.
// Checksum offload is the kernel's precondition for segmentation offload.
const tapOffloads = 0x1 | 0x2 | 0x4

// createTap creates the tap device name in the form the builtin stack's
// endpoint reads and returns its file.
func createTap(name string) (*os.File, error) {
	// O_NONBLOCK: the parent waits for frames in Go's poller, which takes
	// a descriptor only if it is non-blocking when the parent wraps it.
	// init itself does nothing but ioctls on it.
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w (it must be mode 0666)", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	// IFF_NO_PI: bare Ethernet frames. IFF_VNET_HDR: each behind a struct
	// virtio_net_hdr, which carries the offloads.
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating tap %s: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tapOffloads); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("turning on the offloads of tap %s: %w", name, err)
	}
	// Closing the last descriptor of a tap that is not persistent
	// unregisters the device, which waits for every pending RCU callback
	// (rcu_barrier in netdev_run_todo): over 10 ms, in the close of
	// whoever holds it last, ursb's exit. A persistent tap outlives its
	// descriptors and goes with the sandbox's network namespace, whose
	// devices the kernel deletes in the background.
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("making tap %s persistent: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// configureInterface gives c.Device its MTU, address, up state and the
// default route.
func configureInterface(c ChildConfig) error {
	ip := net.ParseIP(c.Address).To4()
	gw := net.ParseIP(c.Gateway).To4()
	if ip == nil || gw == nil || c.PrefixLen <= 0 || c.PrefixLen > 32 {
		return fmt.Errorf("bad network configuration %+v", c)
	}
	var index int
	err := withInetSocket(func(fd int) error {
		ifr, err := unix.NewIfreq(c.Device)
		if err != nil {
			return err
		}
		if c.MTU > 0 {
			ifr.SetUint32(uint32(c.MTU))
			if err := unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr); err != nil {
				return fmt.Errorf("setting the MTU of %s to %d: %w", c.Device, c.MTU, err)
			}
		}
		if err := ifr.SetInet4Addr(ip); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
			return fmt.Errorf("setting the address of %s: %w", c.Device, err)
		}
		if err := ifr.SetInet4Addr(net.CIDRMask(c.PrefixLen, 32)); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
			return fmt.Errorf("setting the netmask of %s: %w", c.Device, err)
		}
		if err := setUp(fd, c.Device); err != nil {
			return fmt.Errorf("bringing up %s: %w", c.Device, err)
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
			return err
		}
		index = int(ifr.Uint32())
		return nil
	})
	if err != nil {
		return err
	}
	if err := addDefaultRoute(index, gw); err != nil {
		return fmt.Errorf("adding the default route via %s: %w", gw, err)
	}
	if c.Address6 == "" {
		return nil
	}
	return configureInterface6(c, index)
}

// configureInterface6 gives c.Device its IPv6 address and default route.
// A kernel without IPv6 (booted with ipv6.disable=1, or the sandbox's
// namespace with it turned off) leaves the sandbox on IPv4, as the host
// it shares the kernel with is.
func configureInterface6(c ChildConfig, index int) error {
	ip, gw := net.ParseIP(c.Address6), net.ParseIP(c.Gateway6)
	if ip == nil || ip.To4() != nil || gw == nil || gw.To4() != nil {
		return fmt.Errorf("bad IPv6 network configuration %+v", c)
	}
	err := rtnetlink(addressRequest(index, ip, PrefixLen6))
	if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EACCES) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("setting the IPv6 address of %s: %w", c.Device, err)
	}
	if err := addDefaultRoute(index, gw); err != nil {
		return fmt.Errorf("adding the default route via %s: %w", gw, err)
	}
	return nil
}

func withInetSocket(f func(fd int) error) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return f(fd)
}

func setUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// addDefaultRoute adds 0.0.0.0/0 or ::/0 (by gw's family) via gw on
// interface index with one rtnetlink request: the ioctl way (SIOCADDRT)
// needs struct rtentry, whose layout differs between architectures.
func addDefaultRoute(index int, gw net.IP) error {
	return rtnetlink(routeRequest(index, gw))
}

// routeRequest is an RTM_NEWROUTE message for the default route.
func routeRequest(index int, gw net.IP) []byte {
	oif := binary.NativeEndian.AppendUint32(nil, uint32(index))
	family := byte(unix.AF_INET)
	if gw.To4() == nil {
		family = unix.AF_INET6
	} else {
		gw = gw.To4()
	}
	body := []byte{
		family,             // rtm_family
		0,                  // rtm_dst_len: the default route
		0,                  // rtm_src_len
		0,                  // rtm_tos
		unix.RT_TABLE_MAIN, // rtm_table
		unix.RTPROT_BOOT,   // rtm_protocol
		unix.RT_SCOPE_UNIVERSE,
		unix.RTN_UNICAST,
		0, 0, 0, 0, // rtm_flags
	}
	body = append(body, rtAttr(unix.RTA_GATEWAY, gw)...)
	body = append(body, rtAttr(unix.RTA_OIF, oif)...)
	return netlinkRequest(unix.RTM_NEWROUTE, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
}

// addressRequest is an RTM_NEWADDR message giving interface index the IPv6
// address ip/prefixLen. IFA_F_NODAD: the address is usable at once, not
// tentative for the second duplicate address detection takes; nothing
// else is on the sandbox's link but ursb's stack.
func addressRequest(index int, ip net.IP, prefixLen int) []byte {
	body := []byte{
		unix.AF_INET6,    // ifa_family
		byte(prefixLen),  // ifa_prefixlen
		unix.IFA_F_NODAD, // ifa_flags
		unix.RT_SCOPE_UNIVERSE,
	}
	body = binary.NativeEndian.AppendUint32(body, uint32(index)) // ifa_index
	body = append(body, rtAttr(unix.IFA_LOCAL, ip.To16())...)
	body = append(body, rtAttr(unix.IFA_ADDRESS, ip.To16())...)
	return netlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
}
