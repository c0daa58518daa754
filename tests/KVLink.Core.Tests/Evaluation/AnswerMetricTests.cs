using KVLink.Training.Evaluation;

namespace KVLink.Core.Tests.Evaluation;

public sealed class AnswerMetricTests
{
    [Theory]
    [InlineData("The Eiffel Tower!", "eiffel tower")]
    [InlineData("  an  APPLE, a day ", "apple day")]
    [InlineData("Theatre", "theatre")]
    public void SquadNormalisation(string text, string expected) => Assert.Equal(expected, AnswerMetric.Normalize(text));

    [Fact]
    public void AnswerIsCorrectWhenAnyNormalisedGoldIsContained()
    {
        Assert.True(AnswerMetric.IsCorrect("It was built in Paris, France.", ["paris"]));
        Assert.True(AnswerMetric.IsCorrect("The answer: the Beatles", ["Beatles", "x"]));
        Assert.False(AnswerMetric.IsCorrect("London", ["Paris"]));
        Assert.False(AnswerMetric.IsCorrect("anything", ["", "the"]));
    }
}
