//! A limit on requests in flight per client address, so no single address can take the slots
//! every other sender needs (thousands of connections that stall in the middle of a body, say).
//!
//! The request path pays two atomic operations and no lock: each connection looks its address's
//! counter up once, when it is accepted, and keeps it; each request only increments and later
//! decrements that counter. The table of counters holds only addresses with an open connection
//! (the last connection of an address removes its entry), so its size is bounded by the open
//! connections, not by how many addresses ever connected.
//!
//! Behind a reverse proxy every request comes from the proxy's address: turn the limit off
//! (`RECEIVER_MAX_IN_FLIGHT_PER_ADDRESS=0`) and have the proxy limit per client.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

/// The per-address counters of one listener.
#[derive(Debug)]
pub struct AddressLimits {
    /// Most requests in flight from one address.
    limit: usize,
    /// In-flight counters of the addresses with an open connection.
    counters: Mutex<HashMap<IpAddr, Arc<AtomicUsize>>>,
}

impl AddressLimits {
    /// Limits of `limit` requests in flight per address; `None` when `limit` is 0 (off).
    pub fn new(limit: usize) -> Option<Arc<Self>> {
        (limit > 0).then(|| {
            Arc::new(Self {
                limit,
                counters: Mutex::new(HashMap::new()),
            })
        })
    }

    /// The counter a new connection from `address` counts its requests on.
    pub fn connection(self: &Arc<Self>, address: IpAddr) -> ConnectionCounter {
        let address = canonical(address);
        let counter = self
            .table()
            .entry(address)
            .or_insert_with(|| Arc::new(AtomicUsize::new(0)))
            .clone();
        ConnectionCounter {
            limits: self.clone(),
            address,
            counter,
        }
    }

    /// Addresses currently tracked (tests check the table does not grow without bound).
    pub fn tracked_addresses(&self) -> usize {
        self.table().len()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Arc<AtomicUsize>>> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One connection's handle on its address's counter.
#[derive(Debug)]
pub struct ConnectionCounter {
    limits: Arc<AddressLimits>,
    address: IpAddr,
    counter: Arc<AtomicUsize>,
}

impl ConnectionCounter {
    /// Admits one more request from this address, or `None` when it already has the limit in
    /// flight. The request counts until the returned guard is dropped.
    pub fn admit(&self) -> Option<InFlight> {
        let before = self.counter.fetch_add(1, Ordering::AcqRel);
        if before >= self.limits.limit {
            self.counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight(self.counter.clone()))
    }
}

impl Drop for ConnectionCounter {
    /// The address's last connection removes its entry (checked under the table's lock, which
    /// every new connection of the address takes too, so no count is ever lost).
    fn drop(&mut self) {
        let mut table = self.limits.table();
        // Held by the table and by us: no other connection of this address is open.
        if Arc::strong_count(&self.counter) == 2 {
            table.remove(&self.address);
        }
    }
}

/// One admitted request; dropping it frees the slot.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// IPv4 clients reaching a dual-stack listener appear as `::ffff:a.b.c.d`: count them as the
/// IPv4 address they are.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_address_gets_its_limit_across_connections_and_no_more() {
        let limits = AddressLimits::new(3).unwrap();
        let first = limits.connection(A);
        let second = limits.connection(A);
        let held: Vec<_> = [&first, &second, &first]
            .iter()
            .map(|connection| connection.admit().expect("within the limit"))
            .collect();
        assert!(second.admit().is_none());
        assert!(first.admit().is_none());
        // Another address is not affected.
        let other = limits.connection(B);
        assert!(other.admit().is_some());
        // A finished request frees a slot.
        drop(held);
        assert!(second.admit().is_some());
    }

    #[test]
    fn the_table_forgets_an_address_with_its_last_connection() {
        let limits = AddressLimits::new(1).unwrap();
        let first = limits.connection(A);
        let second = limits.connection(A);
        let _b = limits.connection(B);
        assert_eq!(limits.tracked_addresses(), 2);
        drop(first);
        assert_eq!(limits.tracked_addresses(), 2);
        drop(second);
        assert_eq!(limits.tracked_addresses(), 1);
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let limits = AddressLimits::new(1).unwrap();
        let v4 = limits.connection(A);
        let mapped = limits.connection(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()));
        let _held = v4.admit().unwrap();
        assert!(mapped.admit().is_none());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        assert!(AddressLimits::new(0).is_none());
    }
}
