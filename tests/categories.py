"""The rubric: each stage's checks in categories, and what each category is worth.

As in chirc's rubric, a category's points are its weight times the share of its checks
passed (each check counting by its own @pytest.mark.points inside its category), so many
small checks in one category cannot outweigh the core of a stage. A stage is worth the
weights of the categories it has checks in. tests/report.py spreads each category's weight
over its checks, so every report (summary.txt, Gradescope's results.json, GitHub
Classroom's payload) adds up the same way, and states each category's total.

An instructor changes the weights with a file of `category = weight` lines, passed as
`tests/grade.py --weights FILE` (or `pytest --weights FILE`); a category it does not name
keeps its default, and a weight of 0 leaves the category out of the score.
"""

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Category:
    weight: int  # the default
    covers: str


CATEGORIES = {
    "delivery": Category(25, "who gets what: messages, joins and leaves reach exactly the right people"),
    "framing": Category(10, "lines split across reads or sharing one, on the server and on the client"),
    "names": Category(10, "names: unique in any case, refused when bad, asked again"),
    "commands": Category(15, "what the user types: commands, prompts, and what the client shows"),
    "leaving": Category(10, "leaving and shutdown: bye, quit, Ctrl+C, a lost connection"),
    "protocol errors": Category(10, "every malformed or out-of-place message gets its exact error"),
    "limits": Category(10, "the limits the spec states, at the limit and one past it"),
    "running": Category(10, "starting and stopping: options, ports, exit codes, no terminal"),
    "robustness": Category(5, "bad bytes, hostile text, fuzzing, load and races do no harm"),
    "compatibility": Category(5, "other programs: the partner stage's, real IRC clients"),
    "screen": Category(15, "the full-screen client: layout, typing, scrolling"),
    "files": Category(15, "file transfer: whole, bounded, refused when it must be"),
    "encryption": Category(15, "TLS: encrypted, and the certificate checked"),
    "defences": Category(15, "stage 06's defences, each shown by its attack script"),
}

# Each test module's checks are in one category, unless BY_CHECK names another.
BY_MODULE = {
    "test_attacks": "defences",
    "test_chat": "delivery",
    "test_cli": "running",
    "test_client_framing": "framing",
    "test_compat": "compatibility",
    "test_complete_chat": "commands",
    "test_details_05_07": "commands",
    "test_details_08_10": "commands",
    "test_echo": "delivery",
    "test_failure_reports": "running",
    "test_files": "files",
    "test_irc": "commands",
    "test_irc_hostile": "robustness",
    "test_limits": "limits",
    "test_log": "defences",
    "test_matrix": "protocol errors",
    "test_boundaries": "limits",
    "test_no_terminal": "running",
    "test_p2p": "commands",
    "test_planted": "running",  # tests/test_failure_reports.py's planted check, in a folder of its own
    "test_protocol": "protocol errors",
    "test_races": "robustness",
    "test_robustness": "robustness",
    "test_terminal_ui": "screen",
    "test_tls": "encryption",
}
BY_CHECK = {
    # test_chat
    "test_server_logs_one_line_per_event": "running",
    "test_a_client_without_a_name_asks_for_one": "names",
    "test_killed_client_is_reported_left_and_the_room_goes_on": "leaving",
    "test_lines_split_across_writes_are_framed": "framing",
    "test_a_client_that_never_reads_is_dropped_and_the_room_goes_on": "limits",
    "test_a_stuck_client_cannot_hold_up_the_shutdown": "leaving",
    "test_a_crowd_of_clients_at_once": "robustness",
    "test_the_full_crowd_of_clients_at_once": "robustness",
    "test_thousands_of_idle_connections_while_a_few_chat": "robustness",
    # test_cli
    "test_server_ctrl_c_stops_it_and_closes_clients": "leaving",
    # test_complete_chat
    "test_dm_reaches_the_recipient_only": "delivery",
    "test_dm_to_unknown_user_is_an_error": "protocol errors",
    "test_dm_to_someone_who_left_is_an_error": "protocol errors",
    "test_who_lists_exactly_the_users_online": "delivery",
    "test_taken_name_in_any_case_is_refused": "names",
    "test_a_name_is_free_again_once_its_owner_leaves": "names",
    "test_a_name_is_free_again_in_the_terminal": "names",
    "test_client_asks_again_after_a_taken_name": "names",
    "test_the_leave_command_exits_and_the_others_are_told": "leaving",
    "test_ctrl_c_or_d_in_command_mode_tells_the_others": "leaving",
    "test_ctrl_c_right_after_joining_never_shows_a_traceback": "leaving",
    "test_server_shutdown_with_three_clients": "leaving",
    # test_details_05_07 and 08_10
    "test_leaving_at_the_name_prompt_ends_the_line": "leaving",
    "test_a_missing_ca_file_is_named": "running",
    "test_a_refused_connection_says_connection_refused": "running",
    "test_a_port_in_use_is_said_once": "running",
    "test_the_log_sizes_a_say_and_a_dm_alike": "running",
    # test_echo
    "test_line_sent_in_pieces_is_one_line": "framing",
    "test_two_lines_in_one_write_are_two_lines": "framing",
    "test_second_client_waits_until_the_first_leaves": "leaving",
    "test_next_client_is_served_after_one_is_killed": "leaving",
    # test_irc
    "test_registration_without_cap": "names",
    "test_registration_waits_for_cap_end": "names",
    "test_cap_without_302_list_and_req": "names",
    "test_nick_in_use_with_rfc1459_casemapping": "names",
    "test_erroneous_nickname_432_and_no_nickname_431": "names",
    "test_nick_change_seen_by_channel_peers_and_the_user": "names",
    "test_anything_before_registration_gets_451": "protocol errors",
    "test_user_with_an_empty_realname_or_username_gets_461": "protocol errors",
    "test_user_twice_and_too_few_parameters": "protocol errors",
    "test_unknown_command_421": "protocol errors",
    "test_join_errors": "protocol errors",
    "test_message_errors_401_403_404_411_412": "protocol errors",
    "test_a_notice_never_gets_an_error": "protocol errors",
    "test_part_is_seen_by_members_only": "delivery",
    "test_channel_message_reaches_every_other_member_only": "delivery",
    "test_notice_to_a_channel_and_messages_to_a_nick": "delivery",
    "test_prefix_ignored_trailing_kept_colours_passed": "delivery",
    "test_lf_only_lines_are_accepted": "framing",
    "test_quit_seen_by_peers_then_error_and_close": "leaving",
    "test_a_lost_connection_is_a_quit_too": "leaving",
    "test_ctrl_c_tells_every_client_and_exits_0": "leaving",
    "test_an_idle_client_is_pinged_and_dropped_if_it_does_not_answer": "limits",
    "test_a_connection_that_never_registers_is_closed": "limits",
    "test_a_512_byte_line_is_taken_and_513_gets_417": "limits",
    "test_a_huge_line_costs_one_417_however_it_arrives": "limits",
    "test_relayed_lines_are_cut_between_characters": "limits",
    "test_whois_channels_fit_in_512_byte_lines": "limits",
    "test_a_reader_that_stops_is_dropped_and_the_others_get_everything": "limits",
    "test_bad_bytes_pass_through_and_harm_nothing": "robustness",
    "test_a_bare_cr_ends_a_line": "framing",
    "test_a_log_nobody_reads_never_stops_the_room": "robustness",
    "test_the_server_name_is_an_option": "running",
    "test_a_bad_argument_is_a_usage_error_and_exit_2": "running",
    "test_a_port_in_use_is_one_line_and_exit_1": "running",
    "test_two_irssi_users_chat_in_a_channel_and_in_private": "compatibility",
    "test_irssi_users_see_each_others_nick_change_part_and_quit": "compatibility",
    "test_irssi_whois_shows_the_user": "compatibility",
    "test_users_of_the_irc_package_chat_in_a_channel_and_in_private": "compatibility",
    # test_irc_hostile
    "test_cr_only_lines_are_accepted": "framing",
    # test_limits
    "test_deeply_nested_json_gets_an_error_and_the_connection_goes_on": "protocol errors",
    "test_a_direct_message_with_a_lone_surrogate_is_delivered": "robustness",
    "test_a_bad_join_timeout_is_one_line_error": "running",
    # test_p2p
    "test_triangle_of_peers_send_to_each_other": "delivery",
    "test_terminate_closes_one_connection_and_tells_the_other_side": "leaving",
    "test_exit_tells_every_peer": "leaving",
    "test_a_killed_peer_is_reported_by_every_peer_it_knew": "leaving",
    "test_ctrl_c_and_ctrl_d_leave_cleanly": "leaving",
    "test_messages_are_framed": "framing",
    "test_bad_bytes_from_a_peer_do_no_harm": "robustness",
    "test_a_message_that_arrives_with_terminate": "robustness",
    "test_connect_to_a_closed_port": "running",
    "test_ctrl_c_the_moment_it_listens": "running",
    "test_a_bare_port_number_works": "running",
    "test_bad_port_is_a_one_line_error": "running",
    "test_port_in_use_is_a_one_line_error": "running",
    # test_protocol
    "test_server_messages_carry_their_fields_and_time": "delivery",
    "test_bad_names_are_refused_and_a_good_one_then_works": "names",
    "test_client_asks_again_after_a_bad_name": "names",
    "test_too_long_line_disconnects_only_that_client": "limits",
    "test_client_past_max_clients_gets_server_full": "limits",
    "test_a_bad_max_clients_is_a_usage_error": "running",
    "test_leave_reasons_quit_and_lost": "leaving",
    "test_bye_is_acknowledged_then_closed": "leaving",
    "test_client_shows_the_time_of_each_message": "commands",
    "test_server_logs_sender_size_and_time": "running",
    "test_a_connection_that_never_joined_leaves_unannounced": "delivery",
    # test_robustness
    "test_crlf_line_endings_are_understood": "framing",
    "test_a_line_sent_one_byte_at_a_time_with_pauses": "framing",
    "test_hostile_names_are_refused": "names",
    "test_client_killed_mid_message": "leaving",
    "test_stuck_client_costs_the_others_no_latency": "limits",
    "test_a_client_that_falls_behind_catches_up": "delivery",
    "test_no_message_lost_or_reordered": "delivery",
    # test_terminal_ui
    "test_newcomer_gets_the_recent_messages_marked_as_history": "delivery",
    "test_history_keeps_only_the_last_n": "limits",
    "test_history_is_20_messages_by_default": "limits",
    "test_client_shows_the_history_on_joining": "commands",
    "test_slash_msg_reaches_the_recipient_only": "delivery",
    "test_slash_command_notices": "commands",
    "test_slash_list_shows_who_is_online": "commands",
    "test_client_works_in_a_pipe": "running",
    # test_tls
    "test_the_server_reports_a_missing_certificate": "running",
}


def of(module, check):
    """The category of a check: `module` is its file's name without .py, `check` its function."""
    category = BY_CHECK.get(check) or BY_MODULE.get(module)
    if category not in CATEGORIES:
        raise KeyError(f"{module}.py::{check} has no category: add its module to BY_MODULE or the "
                       f"check to BY_CHECK in tests/categories.py")
    return category


def weights(path=None):
    """The default weights, with those of a weights file (`category = weight` lines) over them."""
    chosen = {name: category.weight for name, category in CATEGORIES.items()}
    if path is None:
        return chosen
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"(.+?)\s*=\s*(\d+)", line)
        if not match or match.group(1) not in CATEGORIES:
            raise ValueError(f"{path}, line {number}: expected `category = weight` (a whole number) with one "
                             f"of {', '.join(CATEGORIES)}; got {line!r}")
        chosen[match.group(1)] = int(match.group(2))
    return chosen


def totals(results, chosen):
    """(category, points, weight, checks passed, checks) per category, in the rubric's order.

    A category's points are its weight times the share of its checks' points that passed,
    rounded down to a whole point: any failed check costs at least one, and every report
    adds up whole points exactly. A category of weight 0 is left out."""
    found = {}
    for result in results:
        entry = found.setdefault(result["tags"][0], [0, 0, 0, 0])
        points = result["extra_data"]["points"]
        entry[0] += points if result["status"] == "passed" else 0
        entry[1] += points
        entry[2] += result["status"] == "passed"
        entry[3] += 1
    rows = []
    for name in CATEGORIES:
        if name in found and chosen[name]:
            passed, possible, checks_passed, checks = found[name]
            rows.append((name, chosen[name] * passed // possible, chosen[name], checks_passed, checks))
    return rows
