package napi

import (
	"fmt"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// Attributes of the queue attribute set (NETDEV_A_QUEUE_*).
const (
	attrQueueID      = 1
	attrQueueIfIndex = 2
	attrQueueType    = 3
	attrQueueNAPIID  = 4
)

// queueAttrName names a queue attribute as netdev.yaml does.
func queueAttrName(typ uint16) string {
	switch typ {
	case attrQueueID:
		return "id"
	case attrQueueIfIndex:
		return "ifindex"
	case attrQueueType:
		return "type"
	case attrQueueNAPIID:
		return "napi-id"
	default:
		return fmt.Sprintf("queue attribute %d", typ)
	}
}

// A QueueType tells receive queues from transmit queues.
type QueueType uint32

// Queue types.
const (
	QueueRX QueueType = 0
	QueueTX QueueType = 1
)

// String returns "rx" or "tx".
func (t QueueType) String() string {
	switch t {
	case QueueRX:
		return "rx"
	case QueueTX:
		return "tx"
	default:
		return fmt.Sprintf("QueueType(%d)", uint32(t))
	}
}

// A Queue is a queue of an interface as the kernel reports it in queue-get.
type Queue struct {
	// ID is the queue index, counted separately for each type.
	ID uint32
	// IfIndex is the interface the queue belongs to.
	IfIndex uint32
	// Type is rx or tx.
	Type QueueType
	// NAPIID is the NAPI instance that serves the queue, or 0 if the kernel
	// reports none (0 is never a valid NAPI id).
	NAPIID uint32
}

// Queues lists the queues of the interface ifindex (queue-get dump); an
// ifindex of 0 lists those of every interface in the namespace. An interface
// that is down has none. An unknown ifindex matches os.ErrNotExist.
func (c *Client) Queues(ifindex uint32) ([]Queue, error) {
	r := queueDumpRequest(ifindex)
	msgs, err := c.execute(r)
	if err != nil {
		return nil, err
	}
	qs, err := parseQueues(msgs)
	if err != nil {
		return nil, fmt.Errorf("napi: %s %s: %w", r.op, r.object, err)
	}
	return qs, nil
}

// queueDumpRequest is the queue-get dump request for ifindex (0: all).
func queueDumpRequest(ifindex uint32) request {
	object := fmt.Sprintf("ifindex %d", ifindex)
	if ifindex == 0 {
		object = "all interfaces"
	}
	return request{
		op:     "queue-get dump",
		object: object,
		cmd:    cmdQueueGet,
		flags:  netlink.Dump,
		encode: func(ae *netlink.AttributeEncoder) {
			if ifindex != 0 {
				ae.Uint32(attrQueueIfIndex, ifindex)
			}
		},
		names: queueAttrName,
	}
}

// parseQueues parses queue-get replies.
func parseQueues(msgs []genetlink.Message) ([]Queue, error) {
	return parseEach(msgs, func(ad *netlink.AttributeDecoder) (Queue, error) {
		var q Queue
		var haveID, haveIfIndex, haveType bool
		for ad.Next() {
			switch ad.Type() {
			case attrQueueID:
				q.ID = decodeU32(ad, "id")
				haveID = true
			case attrQueueIfIndex:
				q.IfIndex = decodeU32(ad, "ifindex")
				haveIfIndex = true
			case attrQueueType:
				q.Type = QueueType(decodeU32(ad, "type"))
				haveType = true
			case attrQueueNAPIID:
				q.NAPIID = decodeU32(ad, "napi-id")
			}
		}
		if !haveID || !haveIfIndex || !haveType {
			return q, fmt.Errorf("queue reply without id, ifindex or type (id %d, ifindex %d, type %v)", q.ID, q.IfIndex, q.Type)
		}
		return q, nil
	})
}
