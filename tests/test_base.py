"""captcha_reader.base: what every layer shares; here, how a script ends when a pipe breaks."""

from captcha_reader.base import counted, quiet_when_output_closes


def test_a_broken_pipe_other_than_the_output_is_one_line_and_status_1(capfd):
    def command() -> int:
        """A command whose own pipe to some other process broke; stdout is a file and fine."""
        raise BrokenPipeError(32, "Broken pipe")

    assert quiet_when_output_closes(command) == 1
    assert capfd.readouterr().err == "error: [Errno 32] Broken pipe\n"


def test_a_command_that_ends_well_keeps_its_status_and_output(capfd):
    def command() -> int:
        """Prints and returns 3."""
        print("read")
        return 3

    assert quiet_when_output_closes(command) == 3
    assert capfd.readouterr().out == "read\n"


def test_count_names_one_or_many():
    assert (counted(1, "image"), counted(0, "image"), counted(2, "file")) == ("1 image", "0 images", "2 files")
