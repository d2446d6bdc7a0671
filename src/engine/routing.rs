//! Routing: which waiting caller is offered to which agent, and the
//! decision record that says why.
//!
//! A decision walks the queue's [`MemberIndex`] (available members only, in
//! the strategy's order, tier first) and stops at the first member who may
//! take the call, so its cost follows the members it has to pass over, not
//! the number of idle agents. What always holds: the member chosen is the
//! one a scan of every member would choose by the strategy's rule (debug
//! builds check it against such a scan on every offer); `random` and
//! `weighted-random` draw from the lowest open tier with eligible members,
//! uniformly or by weight.

use super::index::{Key, MemberIndex};
use super::order;
use super::*;

/// Draws before `random` and `weighted-random` give up sampling and count
/// the eligible members instead (when few of the available ones are
/// eligible). Rejection sampling with a fallback that picks by the same
/// law keeps the distribution exact.
const RANDOM_TRIES: usize = 32;

impl Engine {
    /// Offers calls until no waiting call has an eligible agent.
    pub(super) fn dispatch(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty_buf);
        loop {
            if self.available.is_empty() {
                // Nothing can be served until an agent becomes available,
                // and that marks the agent's queues dirty again.
                self.dirty.clear();
                break;
            }
            // (cross-queue key, queue, call, first eligible member)
            type Best = ((i64, u64, u64), QueueId, CallId, usize);
            let mut best: Option<Best> = None;
            dirty.clear();
            dirty.extend(self.dirty.iter().copied());
            for &q in &dirty {
                match self.find_candidate(q) {
                    None => {
                        self.dirty.remove(&q);
                    }
                    Some((c, first)) => {
                        let key = self.cross_queue_key(q, c);
                        if best.as_ref().is_none_or(|b| key < b.0) {
                            best = Some((key, q, c, first));
                        }
                    }
                }
            }
            let Some((_, q, c, first)) = best else {
                break;
            };
            self.offer(q, c, first);
        }
        self.dirty_buf = dirty;
    }

    /// Smaller goes first: higher effective priority, then the policy, then
    /// arrival order.
    fn cross_queue_key(&self, q: QueueId, c: CallId) -> (i64, u64, u64) {
        let call = &self.calls[&c];
        let queue = &self.queues[q.0 as usize];
        let eff = order::effective_priority(call.priority, call.entered, self.now, queue.cfg.aging_secs);
        let age = (self.now.since(call.arrived) + call.waited_before).as_millis() as u64;
        let policy = match self.settings.cross_queue_policy {
            CrossQueuePolicy::OldestCaller => u64::MAX - age,
            CrossQueuePolicy::QueueWeight => u64::MAX - age.saturating_mul(queue.cfg.weight as u64),
        };
        (-eff, policy, call.seq)
    }

    /// The first call of `q` in service order that an eligible agent can take
    /// now, with the first eligible member in the index's order (which is
    /// in the lowest tier with an eligible member).
    ///
    /// The hot path of routing. Callers without skills of their own whose
    /// wait puts them at the same relaxation step and tier opening have the
    /// same eligible agents (agent state and back-off do not depend on the
    /// call), so once one such caller found nobody, the others are skipped
    /// without checking agents again.
    fn find_candidate(&self, q: QueueId) -> Option<(CallId, usize)> {
        let queue = &self.queues[q.0 as usize];
        if queue.line.is_empty() || queue.index.is_empty() {
            return None;
        }
        let mut buf = Vec::new();
        let mut failed: Vec<(usize, usize)> = Vec::new();
        for e in queue.line.iter(self.now, queue.cfg.aging_secs) {
            let call = &self.calls[&e.call];
            if call.state != CallState::Waiting || !self.callback_offerable(e.call) {
                continue;
            }
            let waited = self.now.since(e.entered).as_millis() as u64;
            let stage = queue.stage(waited);
            if call.own.is_empty() && failed.contains(&stage) {
                continue;
            }
            let reqs = self.requirements(queue, call, waited, &mut buf);
            if let Some(m) = self.first_eligible(queue, waited, reqs) {
                return Some((e.call, m));
            }
            if call.own.is_empty() {
                failed.push(stage);
            }
        }
        None
    }

    /// The first member in index order who may take a call that waited
    /// `waited` ms and needs `reqs`; closed tiers are skipped whole.
    fn first_eligible(&self, queue: &Queue, waited: u64, reqs: &[Req]) -> Option<usize> {
        queue.index.tiers().filter(|&t| waited >= queue.tier_open_ms(t)).find_map(|t| {
            queue.index.tier(t).map(|k| k.member as usize).find(|&m| self.check(queue, m, waited, reqs).is_ok())
        })
    }

    /// The call's skill requirements after waiting `waited` ms: the queue's
    /// and the call's own (the higher level wins), with every relaxation step
    /// due applied. Borrows the queue's list when nothing changes it.
    pub(super) fn requirements<'a>(
        &self,
        queue: &'a Queue,
        call: &Call,
        waited: u64,
        out: &'a mut Vec<Req>,
    ) -> &'a [Req] {
        let steps = queue.stage(waited).0;
        if call.own.is_empty() && steps == 0 {
            return &queue.required;
        }
        out.clear();
        out.extend_from_slice(&queue.required);
        for r in &call.own {
            let have = out.iter().find(|x| x.skill == r.skill).map_or(0, |x| x.min);
            upsert(out, Req { skill: r.skill, min: r.min.max(have) });
        }
        for step in &queue.relax[..steps] {
            for s in &step.set {
                if let Some(x) = out.iter_mut().find(|x| x.skill == s.skill) {
                    x.min = s.min;
                }
            }
            out.retain(|x| !step.drop.contains(&x.skill));
            for a in &step.add {
                upsert(out, *a);
            }
        }
        out
    }

    /// Whether member `m` of `queue` may be offered a call that has waited
    /// `waited` ms and needs `reqs`. Allocation-free; [`Engine::explain`]
    /// turns a refusal into words for the decision record.
    fn check(&self, queue: &Queue, m: usize, waited: u64, reqs: &[Req]) -> Result<(), Why> {
        let member = &queue.members[m];
        let tag = self.tags[member.agent.0 as usize];
        if tag != Tag::Available {
            return Err(Why::Tag(tag));
        }
        let agent = &self.agents[member.agent.0 as usize];
        if agent.backoff_until > self.now {
            return Err(Why::BackOff(agent.backoff_until.0 - self.now.0));
        }
        let open = queue.tier_open_ms(member.tier);
        if waited < open {
            return Err(Why::TierClosed(member.tier, open - waited));
        }
        for r in reqs {
            let has = agent.level(r.skill);
            if has == 0 {
                return Err(Why::SkillMissing(r.skill));
            }
            if has < r.min {
                return Err(Why::SkillTooLow(r.skill, has, r.min));
            }
        }
        Ok(())
    }

    fn explain(&self, a: AgentId, call: &Call, why: Why) -> Skip {
        let skill = |s: SkillId| match s {
            SkillId::UNDECLARED => call.undeclared_skill.clone().unwrap_or_else(|| Arc::from("")),
            s => self.skills[s.0 as usize].clone(),
        };
        match why {
            Why::Tag(Tag::Gone | Tag::LoggedOut) => Skip::LoggedOut,
            Why::Tag(Tag::Paused) => match &self.agents[a.0 as usize].state {
                AgentState::Paused { reason, .. } => Skip::Paused(reason.clone()),
                _ => Skip::Paused(String::new()),
            },
            Why::Tag(Tag::WrapUp) => Skip::WrapUp,
            Why::Tag(Tag::Ringing) => Skip::Ringing,
            Why::Tag(Tag::OnCall) => Skip::OnCall,
            Why::Tag(Tag::Unregistered) => Skip::Unregistered,
            Why::Tag(Tag::Available) => Skip::NotChosen,
            Why::BackOff(remaining_ms) => Skip::BackOff { remaining_ms },
            Why::TierClosed(tier, opens_in_ms) => Skip::TierClosed { tier, opens_in_ms },
            Why::SkillMissing(s) => Skip::SkillMissing { skill: skill(s) },
            Why::SkillTooLow(s, has, needs) => Skip::SkillTooLow { skill: skill(s), has, needs },
        }
    }

    // ----- the index ---------------------------------------------------------

    /// Where member `m` of `queue` goes in its index: the strategy's order
    /// among equals of a tier, as `choose` used to sort them.
    fn index_key(&self, queue: &Queue, m: usize) -> Key {
        let member = &queue.members[m];
        let agent = &self.agents[member.agent.0 as usize];
        let idle = agent.idle_since;
        let (first, idle) = match queue.cfg.strategy {
            Strategy::Linear
            | Strategy::RoundRobin
            | Strategy::Random
            | Strategy::WeightedRandom
            | Strategy::RingAll => (0, Time::ZERO),
            Strategy::LongestIdle => (0, idle),
            Strategy::FewestCalls => (member.answered, idle),
            Strategy::Priority | Strategy::Skills => match queue.cfg.tie_break {
                TieBreak::LongestIdle => (0, idle),
                TieBreak::FewestSkills => (agent.skill_count as u64, idle),
                TieBreak::BestLevel => (u64::MAX - level_sum(agent, &queue.required), idle),
            },
        };
        Key { tier: member.tier, first, idle, member: m as u32 }
    }

    /// Whether member `m` belongs in the queue's index: available, and
    /// able to meet the queue's own skills. Without relaxation a call never
    /// needs less than those, so a member short of them could never be
    /// offered a call of this queue; filing it would only make walks (and
    /// `fewest-calls`, where it stays first, never answering) pass over it.
    fn files(&self, queue: &Queue, m: usize) -> bool {
        let agent = &self.agents[queue.members[m].agent.0 as usize];
        agent.dispatchable()
            && (!queue.relax.is_empty() || queue.required.iter().all(|r| agent.level(r.skill) >= r.min.max(1)))
    }

    /// Re-files agent `a` in the index of every queue it serves, after any
    /// change of its routing state.
    pub(super) fn reindex(&mut self, a: AgentId) {
        for i in 0..self.agents[a.0 as usize].queues.len() {
            let (q, m) = self.agents[a.0 as usize].queues[i];
            let queue = &self.queues[q.0 as usize];
            // During a reload the memberships lag the new member lists for a
            // moment; the reload rebuilds every index at its end.
            if queue.members.get(m as usize).is_none_or(|x| x.agent != a) {
                continue;
            }
            let key = self.files(queue, m as usize).then(|| self.index_key(queue, m as usize));
            let index = &mut self.queues[q.0 as usize].index;
            match key {
                Some(key) => index.insert(key),
                None => index.remove(m),
            }
        }
    }

    /// Builds every queue's index from scratch (after a reload changed
    /// members, tiers, strategies or skills).
    pub(super) fn rebuild_indexes(&mut self) {
        for q in 0..self.queues.len() {
            let mut index = MemberIndex::new(self.queues[q].members.len());
            let queue = &self.queues[q];
            for (m, member) in queue.members.iter().enumerate() {
                let agent = &self.agents[member.agent.0 as usize];
                let serves = agent.queues.contains(&(QueueId(q as u32), m as u32));
                if serves && self.files(queue, m) {
                    index.insert(self.index_key(queue, m));
                }
            }
            self.queues[q].index = index;
        }
    }

    /// Checks every queue's index against a scan of its members: the first
    /// difference, if any.
    #[cfg(test)]
    pub(super) fn verify_indexes(&self) -> Result<(), String> {
        for (q, queue) in self.queues.iter().enumerate() {
            queue.index.verify().map_err(|e| format!("queue {q}: {e}"))?;
            let mut filed = 0;
            for (m, member) in queue.members.iter().enumerate() {
                let agent = &self.agents[member.agent.0 as usize];
                let serves = agent.queues.contains(&(QueueId(q as u32), m as u32));
                let want = (serves && self.files(queue, m)).then(|| self.index_key(queue, m));
                if queue.index.key(m as u32) != want {
                    return Err(format!(
                        "queue {q} member {m} ({}, {}): filed {:?}, should be {want:?}",
                        agent.name,
                        agent.state.name(),
                        queue.index.key(m as u32)
                    ));
                }
                filed += want.is_some() as usize;
            }
            if filed != queue.index.len() {
                return Err(format!("queue {q}: {} filed, {filed} available members", queue.index.len()));
            }
        }
        Ok(())
    }

    // ----- choosing and offering ----------------------------------------------

    /// Picks the agent(s) for `c` by the queue's strategy, into `chosen` in
    /// member order, from the tier of `first` (the first eligible member in
    /// index order, so the lowest tier with an eligible member).
    fn choose(&mut self, q: QueueId, c: CallId, first: usize, chosen: &mut Vec<usize>) {
        let queue = &self.queues[q.0 as usize];
        let call = &self.calls[&c];
        let tier = queue.members[first].tier;
        let waited = self.now.since(call.entered).as_millis() as u64;
        let mut buf = Vec::new();
        let reqs = self.requirements(queue, call, waited, &mut buf);
        let ok = |m: usize| self.check(queue, m, waited, reqs).is_ok();
        let pick = match queue.cfg.strategy {
            Strategy::Linear | Strategy::LongestIdle | Strategy::FewestCalls => first,
            Strategy::Priority | Strategy::Skills => match queue.cfg.tie_break {
                TieBreak::BestLevel if !same_skills(reqs, &queue.required) => self.best_level(queue, tier, reqs, &ok),
                _ => first,
            },
            Strategy::RoundRobin => {
                let next = queue.rr_next.min(u32::MAX as usize) as u32;
                queue.index.tier_from(tier, next).map(|k| k.member as usize).find(|&m| ok(m)).unwrap_or(first)
            }
            Strategy::RingAll => {
                chosen.extend(queue.index.tier(tier).map(|k| k.member as usize).filter(|&m| ok(m)));
                debug_assert!(chosen.windows(2).all(|w| w[0] < w[1]), "ring-all keys are in member order");
                return;
            }
            Strategy::Random | Strategy::WeightedRandom => {
                let weighted = queue.cfg.strategy == Strategy::WeightedRandom;
                let drawn = queue.index.tier_members(tier);
                let max_weight = queue.max_weight.max(1) as u64;
                let mut pick = None;
                for _ in 0..RANDOM_TRIES {
                    let m = drawn[self.rng.random_range(0..drawn.len())] as usize;
                    if weighted && self.rng.random_range(0..max_weight) >= queue.members[m].weight as u64 {
                        continue;
                    }
                    if self.check(queue, m, waited, reqs).is_ok() {
                        pick = Some(m);
                        break;
                    }
                }
                match pick {
                    Some(m) => m,
                    None => {
                        // Few of the tier are eligible: count them and pick
                        // by the same law.
                        chosen.extend(
                            queue
                                .index
                                .tier(tier)
                                .map(|k| k.member as usize)
                                .filter(|&m| self.check(queue, m, waited, reqs).is_ok()),
                        );
                        let m = if weighted {
                            let total: u64 = chosen.iter().map(|&m| queue.members[m].weight as u64).sum();
                            let mut x = self.rng.random_range(0..total);
                            let mut pick = chosen[chosen.len() - 1];
                            for &m in chosen.iter() {
                                let w = queue.members[m].weight as u64;
                                if x < w {
                                    pick = m;
                                    break;
                                }
                                x -= w;
                            }
                            pick
                        } else {
                            chosen[self.rng.random_range(0..chosen.len())]
                        };
                        chosen.clear();
                        m
                    }
                }
            }
        };
        #[cfg(debug_assertions)]
        self.debug_check_pick(queue, tier, pick, waited, reqs);
        if queue.cfg.strategy == Strategy::RoundRobin {
            self.queues[q.0 as usize].rr_next = pick + 1;
        }
        chosen.push(pick);
    }

    /// `best-level` when the call's skills are not the queue's: the index is
    /// ordered by level on the queue's skills, which bounds the level on the
    /// call's from above by at most the highest level anyone has in the
    /// skills the call adds; the walk stops once that bound falls below the
    /// best found.
    fn best_level(&self, queue: &Queue, tier: u32, reqs: &[Req], ok: &dyn Fn(usize) -> bool) -> usize {
        let extra: u64 = reqs
            .iter()
            .filter(|r| !queue.required.iter().any(|b| b.skill == r.skill))
            .map(|r| self.skill_max.get(r.skill.0 as usize).copied().unwrap_or(0) as u64)
            .sum();
        let mut best: Option<(u64, Time, usize)> = None;
        for key in queue.index.tier(tier) {
            let on_queue_skills = u64::MAX - key.first;
            if best.is_some_and(|(b, _, _)| on_queue_skills.saturating_add(extra) < u64::MAX - b) {
                break;
            }
            let m = key.member as usize;
            if ok(m) {
                let agent = &self.agents[queue.members[m].agent.0 as usize];
                let k = (u64::MAX - level_sum(agent, reqs), agent.idle_since, m);
                if best.is_none_or(|b| k < b) {
                    best = Some(k);
                }
            }
        }
        best.expect("the tier has an eligible member").2
    }

    /// Debug builds: the pick is what a scan of every member by the old
    /// sorting rules gives (for the random strategies: eligible, lowest tier).
    #[cfg(debug_assertions)]
    fn debug_check_pick(&self, queue: &Queue, tier: u32, pick: usize, waited: u64, reqs: &[Req]) {
        let eligible: Vec<usize> =
            (0..queue.members.len()).filter(|&m| self.check(queue, m, waited, reqs).is_ok()).collect();
        let min_tier = eligible.iter().map(|&m| queue.members[m].tier).min();
        assert_eq!(min_tier, Some(tier), "the index's lowest eligible tier is the scan's");
        let pool: Vec<usize> = eligible.into_iter().filter(|&m| queue.members[m].tier == tier).collect();
        let idle = |m: usize| self.agents[queue.members[m].agent.0 as usize].idle_since;
        let want = match queue.cfg.strategy {
            Strategy::Random | Strategy::WeightedRandom | Strategy::RingAll => {
                assert!(pool.contains(&pick), "random pick {pick} is not eligible in tier {tier}");
                return;
            }
            Strategy::Linear => pool[0],
            Strategy::RoundRobin => pool.iter().copied().find(|&m| m >= queue.rr_next).unwrap_or(pool[0]),
            Strategy::FewestCalls => {
                pool.iter().copied().min_by_key(|&m| (queue.members[m].answered, idle(m), m)).expect("not empty")
            }
            Strategy::LongestIdle => pool.iter().copied().min_by_key(|&m| (idle(m), m)).expect("not empty"),
            Strategy::Priority | Strategy::Skills => {
                let key = |m: usize| {
                    let agent = &self.agents[queue.members[m].agent.0 as usize];
                    let first = match queue.cfg.tie_break {
                        TieBreak::LongestIdle => 0,
                        TieBreak::FewestSkills => agent.skill_count as u64,
                        TieBreak::BestLevel => u64::MAX - level_sum(agent, reqs),
                    };
                    (first, agent.idle_since, m)
                };
                pool.iter().copied().min_by_key(|&m| key(m)).expect("not empty")
            }
        };
        assert_eq!(pick, want, "{} picked member {pick}, a full scan picks {want}", queue.cfg.strategy.name());
    }

    /// Rings the chosen agent(s) for `c` and records the decision.
    fn offer(&mut self, q: QueueId, c: CallId, first: usize) {
        let now = self.now;
        let mut chosen = std::mem::take(&mut self.chosen_buf);
        chosen.clear();
        self.choose(q, c, first, &mut chosen);
        let queue = &self.queues[q.0 as usize];
        let call = &self.calls[&c];
        let min_tier = queue.members[chosen[0]].tier;
        let waited = now.since(call.entered).as_millis() as u64;
        let mut buf = Vec::new();
        let reqs = self.requirements(queue, call, waited, &mut buf);
        // The record names every chosen member and, in member order, the
        // others up to DECISION_DETAIL; a queue of thousands would otherwise
        // cost thousands of explanations per offer (it was most of the CPU
        // of an offer at 8,000 members). Members past that are not looked at.
        let mut others = DECISION_DETAIL.saturating_sub(chosen.len());
        let mut candidates = Vec::with_capacity(queue.members.len().min(DECISION_DETAIL + chosen.len()));
        let mut next_chosen = 0;
        for (m, member) in queue.members.iter().enumerate() {
            if chosen.get(next_chosen) == Some(&m) {
                next_chosen += 1;
                candidates.push(Candidate { agent: member.agent, skipped: None });
                continue;
            }
            if others == 0 {
                break;
            }
            others -= 1;
            let skipped = match self.check(queue, m, waited, reqs) {
                Ok(()) if member.tier > min_tier => Skip::LowerTierFirst { tier: member.tier },
                Ok(()) => Skip::NotChosen,
                Err(why) => self.explain(member.agent, call, why),
            };
            candidates.push(Candidate { agent: member.agent, skipped: Some(skipped) });
        }
        for &m in &chosen[next_chosen..] {
            candidates.push(Candidate { agent: queue.members[m].agent, skipped: None });
        }
        let omitted = queue.members.len() - candidates.len();
        let decision = Decision { strategy: queue.cfg.strategy, candidates, omitted };
        let timeout = Duration::from_secs(queue.cfg.ring_timeout_secs as u64);
        let agents: Vec<AgentId> = chosen.iter().map(|&m| queue.members[m].agent).collect();
        self.chosen_buf = chosen;
        debug!(call = c.0, queue = %queue.cfg.name, agents = ?agents, "Waiting => Offering");
        for &a in &agents {
            self.agents[a.0 as usize].alerting = false;
            self.set_state(a, AgentState::Ringing { call: c, since: now }, "offered");
            self.timers.set(TimerKind::RingTimeout { call: c, agent: a }, now + timeout);
            self.actions.push_back(Action::Ring { call: c, agent: a, timeout });
        }
        let call = self.calls.get_mut(&c).expect("offered call exists");
        call.state = CallState::Offering;
        call.ringing = agents;
        self.events.push_back(Event::Offered { call: c, queue: q, decision });
    }
}

/// The agent's total level on the skills of `reqs` (best-level tie-break).
fn level_sum(agent: &Agent, reqs: &[Req]) -> u64 {
    reqs.iter().map(|r| agent.level(r.skill) as u64).sum()
}

/// Whether `a` and `b` name the same skills (levels aside): then the level
/// sum the index is ordered by is the call's own.
fn same_skills(a: &[Req], b: &[Req]) -> bool {
    a.len() == b.len() && a.iter().all(|r| b.iter().any(|x| x.skill == r.skill))
}
