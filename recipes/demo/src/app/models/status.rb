class Status
  def initialize(text)
    @text = text
  end
end
